"""Image<->text retrieval on photos a run trained on beside held-out photos, at each checkpoint it kept.

    python scripts/generalization_gap.py runs/flickr8k/s0-clip_300 runs/flickr8k/s0-clip_1200 \
        --out results/flickr8k-generalization

Flickr8k cells keep their last three checkpoints (``save_every: 100``). For each, this evaluates
retrieval (``cloob eval retrieval``, one thread) on two sets of the same size, so their recalls compare:
the first ``--photos`` photos of the **train** split in file order with their five captions each (a CSV
written once beside the extracted split files, ``train-first<N>.csv``), and the first ``--photos``
photos of **val**. Test is not read. A large train − val gap with a flat val recall means the extra
steps went into memorising the 5,591 training photos. Prints a Markdown table; writes
``<out>/<cell>/step-N/retrieval-*.json`` and ``<out>/gap.json``.

Evaluations are kept under ``--out`` and never repeated, and the table has every step found there, so
calling it again while a run trains (every few minutes) records each checkpoint before ``keep_last``
removes it: the whole curve from a run that keeps three.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from cloob.checkpoint import list_checkpoints

METRIC = "mean_recall"


def first_photos(src: Path, dst: Path, photos: int) -> Path:
    """``dst``: the rows of the CSV ``src`` whose photo is among its first ``photos`` distinct ones (file order).

    Raises ValueError when ``src`` has fewer photos."""
    if dst.is_file():
        return dst
    with src.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows, seen = [], []
        for row in reader:
            if row[0] not in seen:
                if len(seen) == photos:
                    break
                seen.append(row[0])
            rows.append(row)
    if len(seen) < photos:
        raise ValueError(f"{src} has {len(seen)} photos, fewer than --photos {photos}")
    tmp = dst.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    tmp.replace(dst)
    return dst


def evaluate(ckpt: Path, spec: str, out: Path) -> None:
    """``cloob eval retrieval`` of checkpoint ``ckpt`` on ``spec``, its JSON into ``out`` (skipped when one is there;
    :func:`collect` reads them)."""
    import contextlib
    import io

    from cloob.cli import main as cloob

    out.mkdir(parents=True, exist_ok=True)
    if not list(out.glob("retrieval-*.json")):
        said = io.StringIO()  # its table and progress bar, shown only when it fails
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            code = cloob(["eval", "retrieval", "--checkpoint", str(ckpt), "--dataset", spec, "--out", str(out),
                          "--no-cache", "--workers", "0", "--device", "cpu"])
        if code:
            raise SystemExit(f"cloob eval retrieval on {ckpt} / {spec} exited {code}:\n{said.getvalue()[-2000:]}")


def collect(out: Path, run: str) -> list[dict]:
    """Every step of ``run`` evaluated on both sets under ``out`` (``<out>/<run>/step-N/{train,val}``), by step.

    Rows outlive their checkpoints: a training run keeps only its last few, so a run evaluated while it
    trained keeps the steps whose checkpoints it has since deleted."""
    rows = []
    for d in (out / run).glob("step-*"):
        found = {name: list((d / name).glob("retrieval-*.json")) for name in ("train", "val")}
        if not all(len(f) == 1 for f in found.values()):
            continue
        row = {"run": run, "step": int(d.name.split("-")[-1])}
        for name, (path,) in found.items():
            metrics = json.loads(path.read_text())["metrics"]
            row[name] = {k: metrics[k] for k in (METRIC, "text_to_image/R@1", "image_to_text/R@1")}
        rows.append(row)
    return sorted(rows, key=lambda r: r["step"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories with checkpoints/")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--photos", type=int, default=500, help="photos per set (val has 500)")
    ap.add_argument("--plot", type=Path, help="PNG: train and val mean recall by step, one colour per run name "
                                               "without its seed (s0-clip_1200 -> clip_1200)")
    args = ap.parse_args(argv)
    import torch

    from cloob.data.flickr8k import extract_flickr8k

    torch.set_num_threads(1)
    root = extract_flickr8k(None, log=lambda *_: None)
    sets = {"train": first_photos(root / "train.csv", root / f"train-first{args.photos}.csv", args.photos),
            "val": first_photos(root / "val.csv", root / f"val-first{args.photos}.csv", args.photos)}
    rows = []
    for run in args.runs:
        for ckpt in list_checkpoints(run / "checkpoints"):  # [] once the run dir or its checkpoints are gone
            step = int(ckpt.name.split("-")[-1])
            try:
                for name, csv_path in sets.items():
                    evaluate(ckpt, str(csv_path), args.out / run.name / f"step-{step}" / name)
            except SystemExit:
                if ckpt.is_dir():
                    raise
                # keep_last removed it while it was read (the run is still training): the next call has the rest
                print(f"{run.name} step {step}: checkpoint removed while evaluated, skipped", file=sys.stderr)
        mine = collect(args.out, run.name)
        if not mine:
            print(f"{run}: no checkpoints and nothing under {args.out / run.name}, skipped", file=sys.stderr)
        for row in mine:
            print(f"{run.name} step {row['step']}: train {row['train'][METRIC]:.3f} val {row['val'][METRIC]:.3f}",
                  file=sys.stderr, flush=True)
        rows += mine
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gap.json").write_text(json.dumps({"photos": args.photos, "rows": rows}, indent=1))
    print(f"| run | step | train {METRIC} | val {METRIC} | train − val | train / val text→image R@1 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        t, v = r["train"], r["val"]
        print(f"| {r['run']} | {r['step']} | {100 * t[METRIC]:.1f} | {100 * v[METRIC]:.1f} | "
              f"{100 * (t[METRIC] - v[METRIC]):+.1f} | {100 * t['text_to_image/R@1']:.1f} / "
              f"{100 * v['text_to_image/R@1']:.1f} |")
    if args.plot:
        plot(rows, args.plot, args.photos)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def recipe_of(run: str) -> str:
    """``s0-clip_1200`` -> ``clip_1200``: a grid cell's name without its seed."""
    head, _, rest = run.partition("-")
    return rest if head[:1] == "s" and head[1:].isdigit() and rest else run


def plot(rows: list[dict], path: Path, photos: int) -> None:
    """Mean recall by step: val solid, train dashed, each seed's points joined, one colour per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipes = list(dict.fromkeys(recipe_of(r["run"]) for r in rows))
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for i, recipe in enumerate(recipes):
        colour = f"C{i % 10}"
        for run in dict.fromkeys(r["run"] for r in rows if recipe_of(r["run"]) == recipe):
            mine = sorted((r for r in rows if r["run"] == run), key=lambda r: r["step"])
            steps = [r["step"] for r in mine]
            first = run == next(r["run"] for r in rows if recipe_of(r["run"]) == recipe)
            for split, style in (("val", "-"), ("train", "--")):
                ax.plot(steps, [100 * r[split][METRIC] for r in mine], style, marker="o", ms=3, color=colour,
                        label=f"{recipe} ({split})" if first else None)
    ax.set_xlabel("training step (batch 256)")
    ax.set_ylabel("mean recall (R@1/5/10 both ways), %")
    ax.set_title(f"Flickr8k retrieval on {photos} train photos (dashed) vs {photos} val photos (solid)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
