"""``cloob benchmark``: the paper's zero-shot tables (and CLIP_benchmark's suites) for any CLIP-like models.

    cloob benchmark --model-source SRC [SRC ...] --suite paper|imagenet|vtab|retrieval|NAME,... --root DIR --out DIR

Each model source is anything :mod:`cloob.model_source` reads. Each dataset is read from ``--root`` in a
published layout (:mod:`cloob.data.published`), never downloaded; class names and prompts come from
the field's packages (:mod:`cloob.evals.prompts`) unless a CLIP_benchmark webdataset ships its own.

Output, per (model, dataset, task): ``OUT/<dataset>_<model label>_<task>.json`` in CLIP_benchmark's
schema (``dataset``, ``model``, ``pretrained``, ``task``, ``metrics``, ``language``), so that
``clip_benchmark build`` reads it, plus a ``cloob`` block (source identity, seconds, templates).
Then ``OUT/table.md`` / ``table.csv`` / ``table.html`` (and ``OUT/summary/benchmark.json``): datasets as
rows, one column per model, laid out as the paper's
Table 1; sources of one method (``--group-by method``) are shown as mean ± std, and the best group is
bold where Welch's test against every other group gives p < ``--alpha``, as ``cloob compare`` marks it.

Resumable: a (model, dataset, task) whose JSON exists for the same source identity is not run again.
"""
from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from pathlib import Path

from cloob.errors import CloobError
from cloob.evals.registry import EVALUATORS, common_default

PAPER = ("birdsnap", "country211", "flowers102", "gtsrb", "ucf101", "stanford_cars", "imagenet", "imagenetv2")
SUITES = {
    "paper": PAPER,
    "imagenet": ("imagenet", "imagenetv2"),
    # CLIP_benchmark's VTAB+ selection, read from its webdataset layout (root/wds_vtab-<name>)
    "vtab": ("vtab/caltech101", "vtab/cifar10", "vtab/cifar100", "vtab/clevr_count_all",
             "vtab/clevr_closest_object_distance", "vtab/diabetic_retinopathy", "vtab/dmlab", "vtab/dsprites_label_orientation",
             "vtab/dsprites_label_x_position", "vtab/dtd", "vtab/eurosat", "vtab/kitti_closest_vehicle_distance",
             "vtab/flowers", "vtab/pets", "vtab/pcam", "vtab/resisc45", "vtab/smallnorb_label_azimuth",
             "vtab/smallnorb_label_elevation", "vtab/sun397", "vtab/svhn"),
    "retrieval": ("flickr8k", "flickr30k", "mscoco_captions"),
}
RETRIEVAL = ("flickr8k", "flickr30k", "mscoco_captions")
# the registry's evaluators that have a CLIP_benchmark counterpart -> its task name
TASKS = {name: ev.clip_benchmark for name, ev in EVALUATORS.items() if ev.clip_benchmark}
BATCH_SIZE, WORKERS = common_default("batch_size"), common_default("workers")  # as `cloob eval`'s
HEADLINE = {"zeroshot_classification": "acc1", "linear_probe": "acc1", "zeroshot_retrieval": "image_retrieval_recall@1"}


class BenchmarkError(CloobError, ValueError):
    """Bad benchmark input (one line)."""


def suite_datasets(suite: str) -> list[str]:
    """``paper`` / ``imagenet`` / ``vtab`` / ``retrieval`` or a comma list of dataset names (suites may be mixed)."""
    names: list[str] = []
    for part in (p.strip() for p in str(suite).split(",")):
        if not part:
            continue
        for name in SUITES.get(part, (part,)):
            if name not in names:
                names.append(name)
    if not names:
        raise BenchmarkError(f"--suite {suite!r} names no dataset (suites: {', '.join(SUITES)})")
    return names


def source_labels(sources: list[str]) -> list[str]:
    """Short unique column names: the last path part, with parents added until they differ."""
    parts = [Path(s).resolve().parts for s in sources]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    raise BenchmarkError("the same model source is given twice")


def source_identity(source: str) -> dict:
    """What decides whether a stored result is still this source's: the checkpoint read and its weights' stamp."""
    from cloob.checkpoint import resolve_checkpoint

    path = Path(source)
    if path.is_dir():
        path = resolve_checkpoint(path) / "model.safetensors"
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def result_path(out: Path, dataset: str, label: str, task: str) -> Path:
    safe = lambda s: s.replace("/", "_").replace(" ", "_")  # noqa: E731 - CLIP_benchmark's own rule for names
    return out / f"{safe(dataset)}_{safe(label)}_{task}.json"


def _done(path: Path, identity: dict) -> dict | None:
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return result if result.get("cloob", {}).get("source") == identity else None


def _write(path: Path, result: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)


# ------------------------------------------------------------------ one model on one dataset
class _Model:
    """A model source loaded on first use (finished results never load it)."""

    def __init__(self, source: str, identity: dict, model_name: str | None, device: str, log):
        self.source, self.identity, self.model_name, self.device, self.log = source, identity, model_name, device, log
        self._loaded = None

    def get(self):
        if self._loaded is None:
            from cloob.data import image_transform
            from cloob.model_source import load_model
            from cloob.models import get_tokenizer

            model, meta = load_model(self.source, self.model_name, device=self.device, warn=self.log)
            self._loaded = (model, meta, get_tokenizer(model.model_name), image_transform(model, train=False))
        return self._loaded


def _names_and_templates(dataset: str, ds) -> tuple[list[str], list[str], str]:
    """Class names (label order) and templates: the webdataset's own files, else the packages' lists.

    A class-folder layout is labelled by sorted folder position, as the reference notebook's
    ``ImageFolder`` labels it: where the folders are named by class (``cifar10/test/airplane``) the
    names are matched by name, otherwise the package's list is taken in that order.
    """
    from cloob.evals import prompts

    shipped_templates = getattr(ds, "templates", None)
    if getattr(ds, "layout", "") == "clip_benchmark_wds" and shipped_templates:
        return list(ds.classes), list(shipped_templates), "the dataset's classnames.txt and templates file"
    names, templates = prompts.classnames(dataset, getattr(ds, "classes", None)), prompts.templates(dataset)
    where = prompts.source(dataset, getattr(ds, "classes", None))
    if getattr(ds, "layout", "") == "reference_zip":
        folders = list(ds.classes)
        by_name = {n.lower(): n for n in names}
        if all(f.lower() in by_name for f in folders):
            names = [by_name[f.lower()] for f in folders]
        elif len(folders) != len(names):
            raise BenchmarkError(f"{dataset}: {len(folders)} class folders but {len(names)} class names in {where}; "
                                 "the reference layout needs one folder per class")
    return names, templates, where


def zeroshot_task(m: _Model, dataset: str, root: Path, batch_size: int, workers: int, cache: Path) -> tuple[dict, dict]:
    """(CLIP_benchmark metrics, details) of zero-shot classification on a dataset's test split."""
    import numpy as np

    from cloob.data.published import open_published
    from cloob.evals.features import encode_labelled
    from cloob.evals.zeroshot import classification_metrics, zeroshot_classifier

    model, meta, tokenizer, transform = m.get()
    ds = open_published(dataset, root, "test", image_transform=transform)
    names, templates, where = _names_and_templates(dataset, ds)
    feats = encode_labelled(model, ds, batch_size=batch_size, num_workers=workers, progress=True)
    if len(feats.labels) and int(feats.labels.max()) >= len(names):
        raise BenchmarkError(f"{dataset}: label {int(feats.labels.max())} but only {len(names)} class names")
    W = zeroshot_classifier(model, tokenizer, names, templates, batch_size=batch_size, progress=True,
                            cache_file=cache / f"classifier-{dataset.replace('/', '_')}.safetensors",
                            identity=json.dumps(m.identity)).cpu().numpy()
    x = feats.features / np.maximum(np.linalg.norm(feats.features, axis=1, keepdims=True), 1e-12)
    r = classification_metrics(x @ W.T, feats.labels, names)
    metrics = {"acc1": r["top1"], "acc5": r.get("top5"), "mean_per_class_recall": r["mean_per_class"]}
    return metrics, {"n": r["n"], "classes": len(names), "templates": len(templates), "prompts_from": where,
                     "layout": getattr(ds, "layout", None), "bad_samples": feats.report}


def retrieval_task(m: _Model, dataset: str, root: Path, batch_size: int, workers: int, cache: Path) -> tuple[dict, dict]:
    """Recall@1/5/10 both ways on a Karpathy-split test set, named as CLIP_benchmark names them."""
    from cloob.data.published import open_retrieval_json
    from cloob.evals.features import encode_retrieval
    from cloob.evals.retrieval import retrieval_metrics

    model, meta, tokenizer, transform = m.get()
    ds = open_retrieval_json(root / dataset, "test", image_transform=transform)
    f = encode_retrieval(model, tokenizer, ds, batch_size=batch_size, num_workers=workers, progress=True)
    r = retrieval_metrics(f.image_features, f.text_features, f.text_image)
    metrics = {}
    for k in (1, 5, 10):  # CLIP_benchmark: image retrieval = text -> image, text retrieval = image -> text
        metrics[f"image_retrieval_recall@{k}"] = r[f"text_to_image/R@{k}"]
        metrics[f"text_retrieval_recall@{k}"] = r[f"image_to_text/R@{k}"]
    return metrics, {"n_images": r["n_images"], "n_texts": r["n_texts"], "bad_samples": f.report}


def linear_probe_task(m: _Model, dataset: str, root: Path, batch_size: int, workers: int, cache: Path) -> tuple[dict, dict]:
    """CLIP_benchmark's linear probe on frozen features (:func:`~cloob.evals.linear_probe.clip_benchmark_linear_probe`):
    weight decay chosen on a validation split, 20 % of the train split drawn with seed 0 (CLIP_benchmark's
    ``--val_proportion``); a layout with a test split only is first split 50/50, stratified, seed 0."""
    import numpy as np

    from cloob.data.bad import DataError
    from cloob.data.published import open_published
    from cloob.evals.features import encode_labelled
    from cloob.evals.linear_probe import clip_benchmark_linear_probe, stratified_split

    model, meta, tokenizer, transform = m.get()
    enc = lambda ds: encode_labelled(model, ds, batch_size=batch_size, num_workers=workers, progress=True)  # noqa: E731
    test = enc(open_published(dataset, root, "test", image_transform=transform))
    try:
        train = enc(open_published(dataset, root, "train", image_transform=transform))
        xtr, ytr, xte, yte, note = train.features, train.labels, test.features, test.labels, "train split"
    except DataError:
        tr, te = stratified_split(test.labels, 0.5, 0)
        xtr, ytr, xte, yte = test.features[tr], test.labels[tr], test.features[te], test.labels[te]
        note = "no train split here: a stratified 50/50 split of the test split, seed 0"
    order = np.random.default_rng(0).permutation(len(ytr))
    n_val = max(1, int(round(0.2 * len(ytr))))
    val, fit = order[:n_val], order[n_val:]
    r = clip_benchmark_linear_probe(xtr[fit], ytr[fit], xtr[val], ytr[val], xte, yte, device=str(m.device), progress=True)
    # NaN (acc5 under 6 classes) is written as null, as the zero-shot task does: the JSON stays standard
    metrics = {k: None if r[k] != r[k] else r[k] for k in ("acc1", "acc5", "mean_per_class_recall")}
    return metrics, {"protocol": note, "weight_decay": r["weight_decay"], "n_train": int(len(fit)),
                     "n_val": int(len(val)), "n_test": int(len(yte))}


RUNNERS = {"zeroshot_classification": zeroshot_task, "zeroshot_retrieval": retrieval_task,
           "linear_probe": linear_probe_task}


# ------------------------------------------------------------------ the command
def run_benchmark(sources: list[str], suite: str, root: str | Path, out: str | Path, *, model_name: str | None = None,
                  linear_probe: bool = False, batch_size: int = BATCH_SIZE, workers: int = WORKERS,
                  device: str | None = None, group_by: str = "method", alpha: float = 0.05, log=None) -> dict:
    """Run every (source, dataset, task) not yet done; write the JSONs and the tables. Returns the summary."""
    from cloob.device import default_device

    log = log or (lambda msg: print(msg, file=sys.stderr))
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise BenchmarkError(f"--root {root} is not a directory (the datasets' local root)")
    datasets = suite_datasets(suite)
    labels = source_labels(sources)
    out.mkdir(parents=True, exist_ok=True)
    device = default_device(device)
    rows = []
    for source, label in zip(sources, labels):
        identity = source_identity(source)
        m = _Model(source, identity, model_name, device, log)
        for dataset in datasets:
            tasks = [TASKS["retrieval"]] if dataset in RETRIEVAL else (
                [TASKS["zeroshot"]] + ([TASKS["linear-probe"]] if linear_probe else []))
            for task in tasks:
                path = result_path(out, dataset, label, task)
                result = _done(path, identity)
                if result is None:
                    t0 = time.perf_counter()
                    log(f"{label} · {dataset} · {task}")
                    metrics, details = RUNNERS[task](m, dataset, root, batch_size, workers, out / "cache" / label)
                    model, meta, _, _ = m.get()
                    result = {"dataset": dataset, "model": meta["model"], "pretrained": str(source), "task": task,
                              "metrics": metrics, "language": "en",
                              "cloob": {"label": label, "source": identity, "format": meta.get("format"),
                                        "method": _method(meta), "step": meta.get("step"),
                                        "seconds": round(time.perf_counter() - t0, 2), **details}}
                    _write(path, result)
                else:
                    log(f"{label} · {dataset} · {task}: done earlier ({path.name})")
                rows.append(result)
    summary = {"suite": suite, "root": str(root), "datasets": datasets, "sources": dict(zip(labels, sources)),
               "results": rows}
    table = build_table(rows, datasets, labels, group_by=group_by, alpha=alpha)
    (out / "table.md").write_text(to_markdown(table))
    (out / "table.csv").write_text(to_csv(table))
    (out / "table.html").write_text(to_html(table, summary))
    # the summary sits in a folder of its own: `clip_benchmark build OUT` reads every OUT/*.json as a result
    (out / "summary").mkdir(exist_ok=True)
    (out / "summary" / "benchmark.json").write_text(json.dumps({**summary, "table": table}, indent=1))
    return {**summary, "table": table}


def _method(meta: dict) -> str | None:
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    return meta.get("method") or cfg.get("method")


def build_table(rows: list[dict], datasets: list[str], labels: list[str], *, group_by: str = "method",
                alpha: float = 0.05) -> dict:
    """Datasets × columns of each task's headline metric (in %). A column is a source, or with
    ``group_by="method"`` every source of one method (mean ± std, Welch's test as ``cloob compare``)."""
    from cloob.analysis.stats import welch_table

    def column(r):
        return (r["cloob"].get("method") or r["cloob"]["label"]) if group_by == "method" else r["cloob"]["label"]

    columns = []
    for label in labels:
        r = next((r for r in rows if r["cloob"]["label"] == label), None)
        c = column(r) if r else label
        if c not in columns:
            columns.append(c)
    table = {"columns": columns, "rows": []}
    for dataset in datasets:
        for task in dict.fromkeys(r["task"] for r in rows if r["dataset"] == dataset):
            key = HEADLINE[task]
            values = {c: [100 * r["metrics"][key] for r in rows if r["dataset"] == dataset and r["task"] == task
                          and column(r) == c and r["metrics"].get(key) is not None] for c in columns}
            cells = {w["method"]: w for w in welch_table(values, alpha=alpha)}
            table["rows"].append({"dataset": dataset, "task": task, "metric": key,
                                  "cells": {c: {k: cells[c][k] for k in ("n", "mean", "std", "significant")}
                                            for c in columns}})
    return table


def _fmt(cell: dict) -> str:
    if not cell["n"]:
        return "–"
    text = f"{cell['mean']:.2f}" if cell["n"] == 1 or math.isnan(cell["std"]) else f"{cell['mean']:.2f}±{cell['std']:.2f}"
    return f"**{text}**" if cell["significant"] else text


def to_markdown(table: dict) -> str:
    head = "| dataset | " + " | ".join(table["columns"]) + " |"
    lines = [head, "|" + " --- |" * (len(table["columns"]) + 1)]
    for row in table["rows"]:
        name = row["dataset"] if row["task"] == "zeroshot_classification" else f"{row['dataset']} ({row['task']})"
        lines.append(f"| {name} | " + " | ".join(_fmt(row["cells"][c]) for c in table["columns"]) + " |")
    return "\n".join(lines) + "\n"


def to_html(table: dict, summary: dict) -> str:
    """One self-contained page: the table (bold = significantly best, underlined = highest mean) and its sources."""
    from cloob.html import CSS, esc, table as html_table

    rows = []
    for row in table["rows"]:
        name = row["dataset"] if row["task"] == "zeroshot_classification" else f"{row['dataset']} ({row['task']})"
        means = [row["cells"][c]["mean"] for c in table["columns"] if row["cells"][c]["n"]]
        best = max(means) if means else None
        cells = [esc(name)]
        for c in table["columns"]:
            cell = row["cells"][c]
            cls = " ".join(x for x in ("sig" if cell["significant"] else "",
                                       "best" if cell["n"] and cell["mean"] == best else "") if x)
            cells.append((esc(_fmt(cell).strip("*")), cls))
        rows.append(cells)
    sources = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in summary["sources"].items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>cloob benchmark</title><style>{CSS}</style>"
            f"</head><body><header><h1>cloob benchmark · {esc(summary['suite'])}</h1><p>datasets under "
            f"{esc(summary['root'])}; headline metric per task in %, mean ± std over a column's sources</p></header>"
            f"<main><section>{html_table(['dataset'] + [esc(c) for c in table['columns']], rows)}"
            "<p class='note'>Bold: the best column is ahead of every other by Welch's t-test (p &lt; alpha); "
            f"underlined: highest mean.</p><h3>Model sources</h3><ul>{sources}</ul></section></main></body></html>")


def to_csv(table: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "task", "metric"] + [f"{c} {k}" for c in table["columns"] for k in ("mean", "std", "n")])
    for row in table["rows"]:
        w.writerow([row["dataset"], row["task"], row["metric"]]
                   + [x for c in table["columns"] for x in (row["cells"][c]["mean"], row["cells"][c]["std"],
                                                             row["cells"][c]["n"])])
    return buf.getvalue()


def cmd_benchmark(args) -> int:
    result = run_benchmark(args.model_source, args.suite, args.root, args.out, model_name=args.model,
                           linear_probe=args.linear_probe, batch_size=args.batch_size, workers=args.workers,
                           device=args.device, group_by=args.group_by, alpha=args.alpha)
    print(to_markdown(result["table"]))
    print(f"wrote {len(result['results'])} result JSONs, table.md and table.csv to {args.out}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("benchmark", help="the paper's zero-shot table (and CLIP_benchmark's suites) for any "
                                         "CLIP-like models, from datasets in their published layouts")
    p.add_argument("--model-source", nargs="+", required=True, metavar="SRC",
                   help="cloob run/checkpoint dirs or weights files (state dict, open_clip epoch_N.pt, OpenAI CLIP "
                        "file, CLOOB reference checkpoint)")
    p.add_argument("--model", default=None, help="open_clip architecture of weights files that need it")
    p.add_argument("--suite", required=True, help=f"{' | '.join(SUITES)} or dataset names, comma-separated")
    p.add_argument("--root", required=True, help="local root holding the datasets (see README)")
    p.add_argument("--out", required=True, help="output directory (one JSON per model, dataset and task)")
    p.add_argument("--linear-probe", action="store_true", help="also a linear probe per classification dataset")
    p.add_argument("--group-by", choices=("method", "none"), default="method",
                   help="columns: one per method (mean ± std over its sources) or one per source")
    p.add_argument("--alpha", type=float, default=0.05, help="Welch's test level for the bold mark")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--workers", type=int, default=WORKERS)
    p.add_argument("--device", default=None, help="cpu or cuda (default cuda when available)")
    p.set_defaults(func=cmd_benchmark)
