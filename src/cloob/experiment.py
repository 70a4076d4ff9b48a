"""``cloob experiment --grid FILE.yaml``: a grid of training + evaluation cells, resumable, then compare and report.

An experiment is YAML data (see ``experiments/``). Keys:

.. code-block:: yaml

    name: ablation-scenes               # required
    out: runs/ablation-scenes           # required; cell c lives in <out>/<c>
    archive: results/ablation-scenes    # optional: finished cells' records kept in the repository
    prepare:                            # optional, idempotent data preparation (registry PREPARE)
      - {scenes: {out: data-cache/scenes-demo, n: 20000, size: 64, seed: 0, n_eval: 1000}}
      - {cifar10_holdout: {out: data-cache/cifar10-val.tar, fraction: 0.1, seed: 0}}
    base: configs/scenes-cloob.yaml     # base training config (relative to the current directory)
    set: {max_steps: 150}               # TrainConfig overrides for every cell
    datasets:                           # optional; entries named by a `dataset` axis:
      scenes: {train_data: "scenes:data-cache/scenes-demo"}    #   TrainConfig overrides, plus
                                        #   an optional `evals` list replacing the top-level one
    recipes:                            # optional; entries named by a `recipe` axis: TrainConfig
      ramp: {inv_tau_start: 10.0, inv_tau_ramp: 0.5}           #   overrides (a recipe is a tuned
                                        #   hyper-parameter: --select picks the best per method)
    grid:                               # required; the cross product of the lists, in this order
      method: [clip, cloob]             #   every TrainConfig key may be an axis
      seed: [0, 1, 2, 3, 4]
    axes_for:                           # optional: method -> the hyper-parameter axes it sweeps;
      clip: [inv_tau]                   #   other axes are dropped for it (duplicates removed).
    per_method:                         # optional overrides by method, applied last
      cloob: {inv_tau: 30.0, hopfield_beta: 14.3}
    evals:                              # [evaluator, dataset spec, extra `cloob eval` args...]
      - [zeroshot, "scenes-scene:data-cache/scenes-demo"]
      - [linear-probe, "cifar10-test:", "--train-dataset", "cifar10-train:"]
    analyze: "scenes-retrieval:data-cache/scenes-demo"   # optional `cloob analyze` per cell
    parallel: 1                         # cells at once (--parallel overrides)
    compare: {baseline: clip}           # optional: baseline, metric (list), alpha, group_by
    select: "zeroshot-scenes-scene-scenes-val/top1"      # optional: write <out>/best.json after the run

Override order: base < set < datasets[dataset] < recipes[recipe] < grid values < per_method[method].

A cell is named from its axis values in grid order: the method bare, ``s<seed>``, the
dataset and the recipe bare, any other axis as ``<key><value>`` (``cloob-inv_tau30-hopfield_beta8-s0``).
``<out>/cells.json`` lists every cell with its axis values and overrides.

Each cell runs as subprocesses (isolated, so K can run in parallel with
``threads = max(1, cores // K)``, unless the cell's config sets ``threads``):
``python -m cloob.cli train --config <cell>/cell.yaml``
where ``cell.yaml`` is the base config merged with the cell's overrides plus
``run_dir: <cell>`` and ``resume: auto`` (a file rather than flags: lists can be
emptied and floats are written exactly), then one ``python -m cloob.cli eval …`` per
evaluation and ``cloob analyze``. With ``parallel: 1`` their output passes through;
otherwise it goes to ``<cell>/train.log`` and ``<cell>/eval.log``.

**Finished** means ``<cell>/DONE`` exists (written after training reached the planned
step and every evaluation succeeded) and records the same config and evals: such a
cell is skipped. Any other cell is (re)run: ``resume: auto`` continues training from
its latest checkpoint (or does nothing if training had finished) and the evaluations
run again. A DONE cell whose config changed is an error (delete it or change ``out``).

**Archive** (optional, ``cloob.archive``): each finished cell's records (DONE, cell.yaml, config.yaml,
versions.json, metrics.jsonl, eval/*.json; no checkpoints) go to ``<archive>/<cell>/``, and a cell
without DONE whose archived copy has the same config and evals is restored from there and
skipped. Commit the archive and a grid resumes in a fresh clone, where ``runs/`` is empty.

After the cells: ``cloob compare <cells> --out <out>/compare``, ``cloob report <cells>
--out <out>/report.html``, and ``<out>/experiment.json`` (command line, grid file
text, wall time, per-cell status and seconds).

Tuning: ``--select METRIC`` (or ``select:``) reads each cell's ``eval/*.json``, averages
METRIC over seeds for each (method, hyper-parameters), and writes the best per method to
``<out>/best.json`` (plus the whole sweep) and prints a ``per_method:`` block to copy into
a final grid. METRIC is ``<eval file stem glob>/<metric key>``, several joined by ``,``
are averaged; a ``min:`` prefix selects the lowest. ``--select`` alone trains nothing.
"""
from __future__ import annotations

import argparse
import fnmatch
import io
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cloob.errors import CloobError
from cloob.archive import archive_cell, archived_done, restore_cell

GRID_KEYS = ("name", "out", "prepare", "base", "set", "datasets", "recipes", "grid", "axes_for", "per_method",
             "evals", "analyze", "parallel", "compare", "select", "archive")
EVALUATORS = ("zeroshot", "retrieval", "linear-probe", "few-shot", "knn", "confusions")
COMPARE_KEYS = ("baseline", "metric", "alpha", "group_by")
NOT_HYPER = ("method", "seed", "dataset")  # axes that are not tuned hyper-parameters


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


PREPARE = {"scenes": _prepare_scenes, "cifar10_holdout": _prepare_cifar10_holdout}


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
    if not isinstance(evals, list):
        raise GridError(f"{where}: expected a list of [evaluator, dataset spec, extra args...]")
    out = []
    for e in evals:
        if not isinstance(e, list) or len(e) < 2 or not all(isinstance(x, (str, int, float)) for x in e):
            raise GridError(f"{where}: each entry must be [evaluator, dataset spec, extra args...], got {e!r}")
        if e[0] not in EVALUATORS:
            raise GridError(f"{where}: unknown evaluator {e[0]!r}; expected one of {', '.join(EVALUATORS)}")
        out.append([str(x) for x in e])
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
    if not isinstance(g["grid"], dict) or not g["grid"]:
        raise GridError(f"{path}: grid must be a non-empty mapping of axis -> list of values")
    grid = {}
    for axis, values in g["grid"].items():
        axis = str(axis).replace("-", "_")
        values = values if isinstance(values, list) else [values]
        if not values:
            raise GridError(f"{path}: grid.{axis} is an empty list")
        if axis in ("dataset", "recipe"):
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
    name: str
    dir: Path
    axes: dict  # the grid values of this cell
    overrides: dict  # set < dataset < axes < per_method, as applied
    config: dict  # base merged with overrides: the cell's cell.yaml
    evals: list = field(default_factory=list)


def _part(axis: str, value) -> str:
    text = re.sub(r"[^A-Za-z0-9_.]+", "_", str(value))
    if axis in ("method", "dataset", "recipe"):
        return text
    return f"s{text}" if axis == "seed" else f"{axis}{text}"


def expand(g: dict) -> list[Cell]:
    """The grid's cells in cross-product order (axes_for-restricted, duplicates removed)."""
    from cloob.train.config import ConfigError, build_config, load_yaml

    base = load_yaml(g["base"]) if g.get("base") else {}
    axes = list(g["grid"])
    cells, seen = [], {}
    for values in itertools.product(*g["grid"].values()):
        chosen = dict(zip(axes, values))
        method = chosen.get("method", g["set"].get("method", base.get("method", "clip")))
        if method in g["axes_for"]:
            keep = set(g["axes_for"][method] or []) | set(NOT_HYPER)
            chosen = {a: v for a, v in chosen.items() if a in keep}
        name = "-".join(_part(a, v) for a, v in chosen.items())
        if name in seen:
            if seen[name] == chosen:
                continue
            raise GridError(f"cells {seen[name]} and {chosen} get the same name {name!r}")
        seen[name] = chosen
        ds = g["datasets"].get(chosen.get("dataset"), {"set": {}, "evals": None})
        recipe = g["recipes"].get(chosen.get("recipe"), {})
        overrides = {**g["set"], **ds["set"], **recipe,
                     **{a: v for a, v in chosen.items() if a not in ("dataset", "recipe")},
                     **g["per_method"].get(method, {})}
        cell_dir = Path(g["out"]) / name
        config = {**base, **overrides, "name": name, "run_dir": str(cell_dir), "resume": "auto"}
        try:
            build_config(None, config)
        except ConfigError as e:
            raise GridError(f"cell {name}: {e}") from None
        cells.append(Cell(name, cell_dir, chosen, overrides, config,
                          ds["evals"] if ds["evals"] is not None else g["evals"]))
    return cells


# ------------------------------------------------------------------ commands
def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "cloob.cli", *map(str, args)]


def cell_threads(cell: Cell, threads: int) -> int:
    """The cell's ``threads`` config key when set (e.g. 1 on a shared machine), else the runner's share of the cores."""
    return int(cell.config.get("threads") or threads)


def cell_commands(cell: Cell, g: dict, threads: int, progress: bool) -> list[tuple[str, list[str]]]:
    """(log name, argv) of the cell's subprocesses in order: train, evals, analyze."""
    train = _cli("train", "--config", cell.dir / "cell.yaml", "--threads", threads)
    if not progress:
        train.append("--no-progress")
    cmds = [("train", train)]
    for evaluator, spec, *extra in cell.evals:
        cmds.append(("eval", _cli("eval", evaluator, "--checkpoint", cell.dir, "--dataset", spec, *extra)))
    if g.get("analyze"):
        cmds.append(("eval", _cli("analyze", "--checkpoint", cell.dir, "--dataset", g["analyze"])))
    return cmds


def _changed_keys(recorded: dict, config: dict) -> list[str]:
    """The config keys whose values differ between a recorded DONE config and the cell's, sorted."""
    return sorted(k for k in set(recorded) | set(config) if recorded.get(k) != config.get(k))


def _done(cell: Cell) -> dict | None:
    path = cell.dir / "DONE"
    if not path.is_file():
        return None
    done = json.loads(path.read_text())
    if done.get("config") != cell.config:
        changed = _changed_keys(done.get("config", {}), cell.config)
        raise GridError(f"cell {cell.name} finished with another config (differs in {', '.join(changed)}); "
                        f"delete {cell.dir} or choose another out")
    return done if done.get("evals") == cell.evals else None


def _restore(cell: Cell, archive: Path) -> bool:
    """Restore the cell from the archive when it has no DONE and the archived one matches its config and evals."""
    if (cell.dir / "DONE").is_file():
        return False
    kept = archived_done(archive / cell.name)
    if kept is None:
        return False
    if kept.get("config") != cell.config or kept.get("evals") != cell.evals:
        changed = _changed_keys(kept.get("config", {}), cell.config) or ["evals"]
        raise GridError(f"cell {cell.name} is archived in {archive / cell.name} with another config (differs in "
                        f"{', '.join(changed)}); delete that copy or choose another archive")
    return restore_cell(archive / cell.name, cell.dir)


def run_cell(cell: Cell, g: dict, threads: int, parallel: int) -> dict:
    """Train (resuming), evaluate, analyze; write DONE. Returns {status, seconds, step}."""
    from cloob.checkpoint import latest_checkpoint, read_meta

    t0 = time.perf_counter()
    threads = cell_threads(cell, threads)
    cell.dir.mkdir(parents=True, exist_ok=True)
    (cell.dir / "cell.yaml").write_text(yaml.safe_dump(cell.config, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    logs = {}
    try:
        for kind, argv in cell_commands(cell, g, threads, progress=parallel == 1):
            if parallel > 1:
                if kind not in logs:
                    logs[kind] = open(cell.dir / f"{kind}.log", "a")
                logs[kind].write(f"$ {' '.join(argv)}\n")
                logs[kind].flush()
                code = subprocess.call(argv, env=env, stdout=logs[kind], stderr=subprocess.STDOUT)
            else:
                code = subprocess.call(argv, env=env)
            if code:
                where = f" (see {cell.dir / (kind + '.log')})" if parallel > 1 else ""
                return {"status": "failed", "seconds": time.perf_counter() - t0,
                        "error": f"`{' '.join(argv[2:])}` exited {code}{where}"}
            if kind == "train":
                ckpt = latest_checkpoint(cell.dir / "checkpoints")
                step = read_meta(ckpt)["step"] if ckpt else 0
                planned = cell.config.get("max_steps")
                if ckpt is None or (planned and step < planned):
                    return {"status": "interrupted", "seconds": time.perf_counter() - t0,
                            "error": f"training stopped at step {step} of {planned}"}
    finally:
        for f in logs.values():
            f.close()
    seconds = time.perf_counter() - t0
    done = {"config": cell.config, "evals": cell.evals, "step": step, "seconds": round(seconds, 2)}
    (cell.dir / "DONE").write_text(json.dumps(done, indent=1))
    return {"status": "done", "seconds": seconds, "step": step}


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def run_experiment(grid_file: str, parallel: int | None = None, dry_run: bool = False, only: str | None = None,
                   argv: list[str] | None = None) -> int:
    """Run (or resume) every cell of a grid, then compare and report. Returns an exit code."""
    t_start = time.perf_counter()
    g = load_grid(grid_file)
    cells = expand(g)
    if only:
        cells = [c for c in cells if fnmatch.fnmatch(c.name, only)]
        if not cells:
            raise GridError(f"--only {only!r} matches no cell of {grid_file}")
    k = max(1, parallel or g["parallel"])
    threads = max(1, (os.cpu_count() or 1) // k)
    out = Path(g["out"])
    n = len(cells)
    print(f"experiment {g['name']}: {n} cells, {k} at a time ({threads} threads each) -> {out}", flush=True)
    if dry_run:
        for p in g["prepare"]:
            print(f"prepare {json.dumps(p)}")
        for c in cells:
            print(f"\n{c.name}  {json.dumps(c.overrides)}")
            for _, cmd in cell_commands(c, g, cell_threads(c, threads), progress=k == 1):
                print("  cloob " + " ".join(cmd[3:]))
        return 0
    for item in g["prepare"]:
        kind, opts = next(iter(item.items()))
        PREPARE[kind](dict(opts or {}))
    out.mkdir(parents=True, exist_ok=True)
    (out / "cells.json").write_text(json.dumps(
        [{"name": c.name, "dir": str(c.dir), "axes": c.axes, "overrides": c.overrides, "evals": c.evals}
         for c in cells], indent=1))
    results: dict[str, dict] = {}
    lock = threading.Lock()
    todo = []
    archive = Path(g["archive"]) if g.get("archive") else None
    if archive:
        restored = [c.name for c in cells if _restore(c, archive)]
        if restored:
            print(f"restored {len(restored)} finished cell(s) from {archive}", flush=True)
    for c in cells:
        done = _done(c)
        if done and archive and archived_done(archive / c.name) != done:
            archive_cell(c.dir, archive / c.name)  # finished before the grid had an archive
        if done:
            results[c.name] = {"status": "skipped", "seconds": 0.0, "step": done.get("step")}
            print(f"[{len(results)}/{n}] skip {c.name} (finished: DONE at step {done.get('step')})", flush=True)
        else:
            todo.append(c)
    t_run = time.perf_counter()

    def job(c: Cell) -> None:
        with lock:
            print(f"[{len(results) + 1}/{n}] start {c.name}", flush=True)
        r = run_cell(c, g, threads, k)
        if archive and r["status"] == "done":
            archive_cell(c.dir, archive / c.name)
        with lock:
            results[c.name] = r
            ran = [x for x in results.values() if x["status"] != "skipped"]
            left = n - len(results)
            eta = (time.perf_counter() - t_run) / len(ran) * left if ran else 0
            msg = "done" if r["status"] == "done" else f"{r['status'].upper()}: {r.get('error')}"
            print(f"[{len(results)}/{n}] {msg} {c.name} in {_fmt(r['seconds'])} · elapsed "
                  f"{_fmt(time.perf_counter() - t_start)} · ETA {_fmt(eta)}", flush=True)

    if k == 1:
        for c in todo:
            job(c)
    else:
        with ThreadPoolExecutor(max_workers=k) as pool:
            list(pool.map(job, todo))
    finished = [c for c in cells if results[c.name]["status"] in ("done", "skipped")]
    summary = {"name": g["name"], "grid_file": str(grid_file), "grid_text": Path(grid_file).read_text(),
               "command": argv if argv is not None else sys.argv, "parallel": k, "threads_per_cell": threads,
               "cells": [{"name": c.name, **{key: (round(v, 2) if isinstance(v, float) else v)
                                             for key, v in results[c.name].items()}} for c in cells]}
    if finished:
        summary["compare_exit"], summary["report_exit"] = compare_and_report(g, [c.dir for c in finished], out)
        if g.get("select"):
            try:
                summary["best"] = str(select(g, cells, g["select"]))
            except GridError as e:  # a typo in the metric must not lose experiment.json
                print(f"error: {e}", file=sys.stderr)
                summary["select_error"] = str(e)
    summary["wall_seconds"] = round(time.perf_counter() - t_start, 2)
    (out / "experiment.json").write_text(json.dumps(summary, indent=1))
    failed = [c.name for c in cells if results[c.name]["status"] not in ("done", "skipped")]
    print(f"experiment {g['name']}: {len(finished)}/{n} cells finished in {_fmt(summary['wall_seconds'])}"
          f"{'; not finished: ' + ', '.join(failed) if failed else ''}\n"
          f"compare: {out / 'compare'}\nreport: {out / 'report.html'}", flush=True)
    return 1 if failed or summary.get("compare_exit") or summary.get("report_exit") else 0


def compare_and_report(g: dict, run_dirs: list[Path], out: Path) -> tuple[int, int]:
    """``<out>/compare/`` (Welch tables) and ``<out>/report.html`` of the finished cells; (compare, report) exit codes."""
    from cloob.analysis.runs import RunError
    from cloob.evals.compare import compare_runs, to_markdown
    from cloob.analysis.report import write_report

    cmp = g["compare"]
    codes = []
    try:
        result = compare_runs([str(d) for d in run_dirs], out / "compare", group_by=cmp.get("group_by") or "method",
                              baseline=cmp.get("baseline"), metrics=cmp.get("metric") or None,
                              alpha=float(cmp.get("alpha", 0.05)))
        print(to_markdown(result))
        print(f"wrote {out / 'compare' / 'compare.md'}, compare.csv, compare.json ({len(result['runs'])} runs)")
        codes.append(0)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: compare: {e}", file=sys.stderr)
        codes.append(2)
    try:
        print(f"wrote {write_report(run_dirs, out / 'report.html', title=g['name'])}")
        codes.append(0)
    except (RunError, FileNotFoundError, ValueError) as e:
        print(f"error: report: {e}", file=sys.stderr)
        codes.append(2)
    return codes[0], codes[1]


# ------------------------------------------------------------------ tuning
def _metric_value(cell_dir: Path, part: str) -> float | None:
    stem, _, key = part.rpartition("/")
    if not stem or not key:
        raise GridError(f"--select: metric {part!r} must be <eval file stem glob>/<metric key>, "
                        "e.g. zeroshot-scenes-scene-scenes-val/top1")
    files = sorted((cell_dir / "eval").glob(f"{stem}.json"))
    if len(files) > 1:
        raise GridError(f"--select: {stem!r} matches several eval files in {cell_dir}: {[f.name for f in files]}")
    if not files:
        return None
    metrics = json.loads(files[0].read_text()).get("metrics", {})
    v = metrics.get(key)
    if not isinstance(v, (int, float)):
        raise GridError(f"--select: {files[0]} has no numeric metric {key!r}; it has {sorted(metrics)}")
    return float(v)


def select(g: dict, cells: list[Cell], metric: str) -> Path:
    """Best hyper-parameters per method (mean over seeds) -> <out>/best.json; prints a per_method block."""
    lower = metric.startswith("min:")
    parts = [p.strip() for p in metric.removeprefix("min:").split(",") if p.strip()]
    groups: dict[tuple, dict] = {}
    sweep = []
    for c in cells:
        values = [_metric_value(c.dir, p) for p in parts]
        if any(v is None for v in values):
            continue
        value = sum(values) / len(values)
        method = c.config.get("method", "clip")
        params = {a: v for a, v in c.axes.items() if a not in NOT_HYPER}
        sweep.append({"cell": c.name, "method": method, "params": params, "value": value})
        grp = groups.setdefault((method, json.dumps(params, sort_keys=True)), {"params": params, "values": []})
        grp["values"].append(value)
    if not sweep:
        raise GridError(f"--select: no cell of {g['name']} has eval results for {metric!r} yet (run the grid first)")
    best: dict[str, dict] = {}
    for (method, _), grp in groups.items():
        mean = sum(grp["values"]) / len(grp["values"])
        if method not in best or (mean < best[method]["value"] if lower else mean > best[method]["value"]):
            best[method] = {**grp["params"], "value": mean, "n": len(grp["values"])}
    out = Path(g["out"]) / "best.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"metric": metric, "mode": "min" if lower else "max", "best": best,
                               "sweep": sweep}, indent=1))
    print(f"best per method by {'lowest' if lower else 'highest'} {metric} (mean over seeds):")
    for method, b in best.items():
        print(f"  {method:18s} {b['value']:.4f}  ({b['n']} seed(s))")
    print("per_method:   # copy into the final grid")
    for method, b in best.items():
        params = {k: v for k, v in b.items() if k not in ("value", "n")}
        print(f"  {method}: {json.dumps(params)}")
    print(f"wrote {out}")
    return out


# ------------------------------------------------------------------ CLI
def cmd_experiment(args: argparse.Namespace) -> int:
    if args.select:
        g = load_grid(args.grid)
        cells = [c for c in expand(g) if not args.only or fnmatch.fnmatch(c.name, args.only)]
        select(g, cells, args.select)
        return 0
    return run_experiment(args.grid, parallel=args.parallel, dry_run=args.dry_run, only=args.only,
                          argv=["cloob", *sys.argv[1:]] if args.argv is None else args.argv)


def add_commands(sub) -> None:
    p = sub.add_parser("experiment", help="run a grid of train + eval cells (resumable), then compare and report",
                       description=__doc__.splitlines()[0])
    p.add_argument("--grid", required=True, help="grid YAML file (see experiments/)")
    p.add_argument("--parallel", type=int, default=None, help="cells at once (overrides the grid's parallel)")
    p.add_argument("--dry-run", action="store_true", help="print the cells and their commands; run nothing")
    p.add_argument("--only", default=None, metavar="PATTERN", help="run only cells whose name matches (fnmatch)")
    p.add_argument("--select", default=None, metavar="METRIC",
                   help="tuning summary only: best hyper-parameters per method -> <out>/best.json")
    p.set_defaults(func=cmd_experiment, argv=None)
