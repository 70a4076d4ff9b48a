"""A grid file: read and validate it (:func:`load_grid`), and expand it into its cells (:func:`expand`).

The keys and their meaning are documented in :mod:`cloob.experiment`. Invalid input raises
:class:`GridError` naming the key (``cloob.cli.main`` prints it as one line).
"""
from __future__ import annotations

import io
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cloob.errors import CloobError
from cloob.evals.registry import EVALUATORS, FINETUNE, EvalArgumentError, parse_args

GRID_KEYS = ("name", "out", "prepare", "base", "set", "datasets", "recipes", "sources", "grid", "axes_for",
             "per_method", "evals", "analyze", "parallel", "compare", "select", "archive")
COMPARE_KEYS = ("baseline", "metric", "alpha", "group_by")
SOURCE_KEYS = ("label", "checkpoint", "timm", "weights", "train", "evals", "seeds")
NOT_HYPER = ("method", "seed", "dataset", "source")  # axes that are not tuned hyper-parameters
GRID_EVALUATORS = (*EVALUATORS, FINETUNE.name)


class GridError(CloobError, ValueError):
    """An invalid grid file."""


# ------------------------------------------------------------------ prepare
def _prepare_scenes(opts: dict) -> None:
    from cloob.data.scenes import generate_scenes

    known = ("out", "n", "size", "seed", "n_eval", "p", "q")
    _no_unknown(opts, known, "prepare scenes")
    if "out" not in opts or "n" not in opts:
        raise GridError("prepare scenes needs out and n")
    generate_scenes(opts["out"], progress=True, **{k: v for k, v in opts.items() if k != "out"})


def _prepare_cifar10_holdout(opts: dict) -> None:
    """Write the CIFAR-10 train images that ``val_fraction`` holds out of training (for seed ``seed``)
    to a tar of ``cifar10-val/<class>/<file>`` (a labelled spec): a validation set never trained on."""
    import tarfile

    from cloob.data.cifar10 import open_cifar10
    from cloob.train.run import split_validation  # the one definition of the hold-out

    _no_unknown(opts, ("out", "fraction", "seed", "path"), "prepare cifar10_holdout")
    out = Path(opts["out"])
    fraction, seed = float(opts.get("fraction", 0.1)), int(opts.get("seed", 0))
    stamp = out.with_suffix(out.suffix + ".json")
    params = {"fraction": fraction, "seed": seed}
    if out.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == params:
        return
    train = open_cifar10(opts.get("path"), "train")
    _, held = split_validation(list(range(len(train))), fraction, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(train.path, "rb") as src, tarfile.open(tmp, "w") as tar:
        for i in held.indices:
            name = train.items[i][0]
            offset, size = train.offsets[name]
            src.seek(offset)
            info = tarfile.TarInfo("cifar10-val/" + "/".join(name.split("/")[-2:]))
            info.size = size
            tar.addfile(info, io.BytesIO(src.read(size)))
    tmp.replace(out)
    stamp.write_text(json.dumps(params))
    print(f"prepare: {len(held.indices)} held-out CIFAR-10 train images -> {out}", flush=True)


def _prepare_flickr8k(opts: dict) -> None:
    """Extract the shared Flickr8k archive to ``out`` (default the user cache; never the repository)."""
    from cloob.data.flickr8k import extract_flickr8k

    _no_unknown(opts, ("out", "tar"), "prepare flickr8k")
    extract_flickr8k(opts.get("out"), opts.get("tar"))


PREPARE = {"scenes": _prepare_scenes, "cifar10_holdout": _prepare_cifar10_holdout, "flickr8k": _prepare_flickr8k}


# ------------------------------------------------------------------ grid
def _no_unknown(d: dict, known, where: str) -> None:
    import difflib

    for key in d:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise GridError(f"{where}: unknown key {key!r}{hint}; expected one of {', '.join(known)}")


def _overrides(d, where: str) -> dict:
    """Validate TrainConfig overrides (unknown keys, types); keys normalised to snake_case."""
    from cloob.train.config import ConfigError, from_dict

    if not isinstance(d, dict):
        raise GridError(f"{where}: expected a mapping of config keys, got {d!r}")
    d = {str(k).replace("-", "_"): v for k, v in d.items()}
    try:
        from_dict(d, where)
    except ConfigError as e:
        raise GridError(str(e)) from None
    return d


def _check_evals(evals, where: str) -> list[list[str]]:
    """A list of ``[evaluator, dataset spec, extra cloob eval args...]``, each checked against the registry."""
    if not isinstance(evals, list):
        raise GridError(f"{where}: expected a list of [evaluator, dataset spec, extra args...]")
    out = []
    for e in evals:
        if not isinstance(e, list) or len(e) < 2 or not all(isinstance(x, (str, int, float)) for x in e):
            raise GridError(f"{where}: each entry must be [evaluator, dataset spec, extra args...], got {e!r}")
        if e[0] not in GRID_EVALUATORS:
            raise GridError(f"{where}: unknown evaluator {e[0]!r}; expected one of {', '.join(GRID_EVALUATORS)}")
        entry = [str(x) for x in e]
        try:  # the registry's parser: a misspelt option fails here, before any cell trains
            parse_args(entry[0], ["--checkpoint", "-", "--dataset", *_with_seed([entry[1:]], "0")[0]])
        except EvalArgumentError as err:
            raise GridError(f"{where}: {entry}: {err}") from None
        out.append(entry)
    return out


def _check_sources(sources, where: str) -> dict:
    """``sources`` entries: a model to evaluate (``checkpoint``, or ``timm`` + ``weights``) or to train here
    (``train``: TrainConfig overrides), with an optional ``label``, ``evals`` list and ``seeds`` subset."""
    if not isinstance(sources, dict):
        raise GridError(f"{where}: expected a mapping of name -> source entry")
    out = {}
    for name, entry in sources.items():
        at = f"{where}.{name}"
        if not isinstance(entry, dict):
            raise GridError(f"{at}: expected a mapping with checkpoint, timm + weights, or train")
        _no_unknown(entry, SOURCE_KEYS, at)
        kinds = [k for k in ("checkpoint", "timm", "train") if k in entry]
        if len(kinds) != 1:
            raise GridError(f"{at}: give exactly one of checkpoint, timm (with weights) or train, got {kinds or 'none'}")
        if ("timm" in entry) != ("weights" in entry):
            raise GridError(f"{at}: timm and weights go together (cloob never downloads weights)")
        seeds = entry.get("seeds")
        if seeds is not None and (not isinstance(seeds, list) or not all(isinstance(x, int) for x in seeds)):
            raise GridError(f"{at}: seeds must be a list of integers, got {seeds!r}")
        src = {"label": str(entry.get("label", name)), "seeds": seeds,
               "evals": _check_evals(entry["evals"], f"{at}.evals") if "evals" in entry else None}
        if "train" in entry:
            src["train"] = _overrides(entry["train"] or {}, f"{at}.train")
        else:
            src["model"] = {k: str(entry[k]) for k in ("checkpoint", "timm", "weights") if k in entry}
        out[str(name)] = src
    return out


def load_grid(path: str | Path) -> dict:
    """Read and validate a grid file; returns the mapping with defaults filled."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist")
    try:
        g = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise GridError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(g, dict):
        raise GridError(f"{path}: expected a mapping at the top level")
    _no_unknown(g, GRID_KEYS, str(path))
    for key in ("name", "out", "grid"):
        if key not in g:
            raise GridError(f"{path}: {key} is required")
    g.setdefault("prepare", [])
    g["set"] = _overrides(g.get("set") or {}, f"{path}: set")
    datasets = g.get("datasets") or {}
    g["datasets"] = {}
    for name, entry in datasets.items():
        entry = dict(entry or {})
        evals = _check_evals(entry.pop("evals"), f"{path}: datasets.{name}.evals") if "evals" in entry else None
        g["datasets"][str(name)] = {"set": _overrides(entry, f"{path}: datasets.{name}"), "evals": evals}
    recipes = g.get("recipes") or {}
    if not isinstance(recipes, dict):
        raise GridError(f"{path}: recipes must be a mapping of name -> config overrides")
    g["recipes"] = {str(name): _overrides(entry or {}, f"{path}: recipes.{name}") for name, entry in recipes.items()}
    g["sources"] = _check_sources(g.get("sources") or {}, f"{path}: sources")
    if not isinstance(g["grid"], dict) or not g["grid"]:
        raise GridError(f"{path}: grid must be a non-empty mapping of axis -> list of values")
    grid = {}
    for axis, values in g["grid"].items():
        axis = str(axis).replace("-", "_")
        values = values if isinstance(values, list) else [values]
        if not values:
            raise GridError(f"{path}: grid.{axis} is an empty list")
        if axis in ("dataset", "recipe", "source"):
            entries = g[axis + "s"]
            for v in values:
                if v not in entries:
                    raise GridError(f"{path}: grid.{axis} value {v!r} is not an entry of {axis}s: "
                                    f"{sorted(entries) or 'none'}")
        else:
            for v in values:
                _overrides({axis: v}, f"{path}: grid.{axis}")
        grid[axis] = values
    g["grid"] = grid
    from cloob.losses import METHODS

    for key in ("axes_for", "per_method"):
        g[key] = dict(g.get(key) or {})
        for m in g[key]:
            if m not in METHODS:
                raise GridError(f"{path}: {key}: unknown method {m!r}; expected one of {sorted(METHODS)}")
    for m, axes in g["axes_for"].items():
        bad = [a for a in axes or [] if a not in grid]
        if bad:
            raise GridError(f"{path}: axes_for.{m}: {bad} are not grid axes ({', '.join(grid)})")
    g["per_method"] = {m: _overrides(v or {}, f"{path}: per_method.{m}") for m, v in g["per_method"].items()}
    g["evals"] = _check_evals(g.get("evals") or [], f"{path}: evals")
    for item in g["prepare"]:
        if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in PREPARE:
            raise GridError(f"{path}: prepare entries are {{kind: {{options}}}} with kind one of {sorted(PREPARE)}, "
                            f"got {item!r}")
    if "base" in g and not Path(g["base"]).is_file():
        raise GridError(f"{path}: base config {g['base']} does not exist (paths are relative to {Path.cwd()})")
    g["parallel"] = int(g.get("parallel") or 1)
    g["compare"] = dict(g.get("compare") or {})
    _no_unknown(g["compare"], COMPARE_KEYS, f"{path}: compare")
    return g


@dataclass
class Cell:
    """One grid cell: a training run and its evaluations in ``dir``."""

    name: str
    dir: Path
    axes: dict  # the grid values of this cell
    overrides: dict  # set < dataset < axes < per_method, as applied
    config: dict  # base merged with overrides: the cell's cell.yaml
    evals: list = field(default_factory=list)
    source: dict | None = None  # an evaluated-only model (checkpoint, or timm + weights); None: the cell trains


def _part(axis: str, value) -> str:
    text = re.sub(r"[^A-Za-z0-9_.]+", "_", str(value))
    if axis in ("method", "dataset", "recipe", "source"):
        return text
    return f"s{text}" if axis == "seed" else f"{axis}{text}"


def _with_seed(evals: list, seed: str) -> list:
    """``{seed}`` in an evaluation's arguments becomes the cell's seed (its split and fine-tuning seeds)."""
    return [[arg.replace("{seed}", seed) for arg in e] for e in evals]


def expand(g: dict) -> list[Cell]:
    """The grid's cells in cross-product order (axes_for-restricted, duplicates removed)."""
    from cloob.train.config import ConfigError, build_config, load_yaml

    base = load_yaml(g["base"]) if g.get("base") else {}
    axes = list(g["grid"])
    cells, seen = [], {}
    for values in itertools.product(*g["grid"].values()):
        chosen = dict(zip(axes, values))
        src = g["sources"].get(chosen.get("source"))
        if src and src["seeds"] is not None and chosen.get("seed") not in src["seeds"]:
            continue  # a source that exists for some seeds only (e.g. two trained checkpoints)
        method = chosen.get("method", (src or {}).get("train", {}).get(
            "method", g["set"].get("method", base.get("method", "clip"))))
        if method in g["axes_for"]:
            keep = set(g["axes_for"][method] or []) | set(NOT_HYPER)
            chosen = {a: v for a, v in chosen.items() if a in keep}
        name = "-".join(_part(a, v) for a, v in chosen.items())
        if name in seen:
            if seen[name] == chosen:
                continue
            raise GridError(f"cells {seen[name]} and {chosen} get the same name {name!r}")
        seen[name] = chosen
        cell_dir = Path(g["out"]) / name
        if src and "model" in src:  # evaluated only: no training config
            seed = str(chosen.get("seed", ""))
            model = {k: v.replace("{seed}", seed) for k, v in src["model"].items()}
            threads = {"threads": g["set"]["threads"]} if "threads" in g["set"] else {}  # a shared machine's limit
            overrides = {"label": src["label"], **threads, **{a: v for a, v in chosen.items() if a != "source"}}
            config = {**overrides, "source": model, "name": name, "run_dir": str(cell_dir)}
            evals = src["evals"] if src["evals"] is not None else g["evals"]
            cells.append(Cell(name, cell_dir, chosen, overrides, config, _with_seed(evals, seed), source=model))
            continue
        ds = g["datasets"].get(chosen.get("dataset"), {"set": {}, "evals": None})
        recipe = g["recipes"].get(chosen.get("recipe"), {})
        trained = {"label": src["label"], **src["train"]} if src else {}
        overrides = {**g["set"], **ds["set"], **recipe, **trained,
                     **{a: v for a, v in chosen.items() if a not in ("dataset", "recipe", "source")},
                     **g["per_method"].get(method, {})}
        config = {**base, **overrides, "name": name, "run_dir": str(cell_dir), "resume": "auto"}
        try:
            build_config(None, config)
        except ConfigError as e:
            raise GridError(f"cell {name}: {e}") from None
        evals = next(e for e in (src and src["evals"], ds["evals"], g["evals"]) if e is not None)
        cells.append(Cell(name, cell_dir, chosen, overrides, config, _with_seed(evals, str(config.get("seed", "")))))
    return cells
