"""`make demo`: CLIP vs CLOOB on the built-in scenes data, end to end, in a few minutes.

Generates the scenes data (cached in ``data-cache/scenes-demo``), trains CLIP and
CLOOB with the same small model, data and step budget (the shipped
``configs/scenes-*.yaml`` with a shorter run; each config's recipe, chosen on validation data
and given as fractions of the run, applies as is: docs/recipe.md), evaluates both (zero-shot
scene and object classification, image–text retrieval), computes the embedding
diagnostics and writes ``runs/demo/report.html``. Prints a side-by-side table,
the report's path and the measured wall time.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# (label, eval JSON prefix, metric key)
ROWS = [
    ("zero-shot scene top-1 (%)", "zeroshot-scenes-scene", "top1"),
    ("zero-shot object top-1 (%)", "zeroshot-scenes-object", "top1"),
    ("image→text R@1 (%)", "retrieval-scenes-retrieval", "image_to_text/R@1"),
    ("text→image R@1 (%)", "retrieval-scenes-retrieval", "text_to_image/R@1"),
]


def _banner(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _cli(*args: str) -> None:
    from cloob.cli import main

    code = main([str(a) for a in args])
    if code:
        raise SystemExit(f"demo: `cloob {' '.join(map(str, args))}` failed with exit code {code}")


def _metric(run: Path, prefix: str, key: str) -> float | None:
    for path in sorted((run / "eval").glob(f"{prefix}*.json")):
        data = json.loads(path.read_text())
        value = data.get(key, data.get("metrics", {}).get(key))
        if isinstance(value, (int, float)):
            return float(value)
    return None


def _recipe(cfg) -> str:
    """The temperatures a demo run trains with (resolved config); its warm-up and CLIP warm start
    follow on the ``schedules:`` line that training prints."""
    parts = [f"recipe (docs/recipe.md): inv_tau {cfg.inv_tau:g} {'learned' if cfg.learn_inv_tau else 'fixed'}"]
    if cfg.hopfield_beta is not None:
        parts.append(f"beta {cfg.hopfield_beta:g}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloob.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="optimiser steps per method")
    parser.add_argument("--n", type=int, default=20000, help="training pairs to generate")
    parser.add_argument("--out", default=str(ROOT / "runs" / "demo"))
    parser.add_argument("--data", default=str(ROOT / "data-cache" / "scenes-demo"))
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    out, data = Path(args.out), Path(args.data)

    from cloob.data.scenes import generate_scenes
    from cloob.train.config import build_config
    from cloob.train.loop import train

    _banner(f"1/5 scenes data ({args.n} training pairs, 64 px) in {data}")
    generate_scenes(data, n=args.n, size=64, seed=0, n_eval=1000, progress=True)

    runs = {}
    for i, method in enumerate(("clip", "cloob")):
        run = out / method
        shutil.rmtree(run, ignore_errors=True)  # the demo always trains afresh
        _banner(f"{2 + i}/5 training {method.upper()} ({args.steps} steps, batch 256, cloob-rn-tiny)")
        cfg = build_config(str(ROOT / "configs" / f"scenes-{method}.yaml"), {
            "train_data": f"scenes:{data}", "run_dir": str(run), "max_steps": args.steps,
            "eval_every": args.steps, "save_every": args.steps, "val_fraction": 0.0,
            "zeroshot": [], "log_every": 5,
        })
        print(_recipe(cfg), flush=True)
        if train(cfg)["interrupted"]:
            print("demo: stopped by a signal; run `make demo` again to start over", file=sys.stderr)
            return 130
        runs[method] = run

    _banner("4/5 evaluating both: zero-shot scenes and objects, retrieval, diagnostics")
    for method, run in runs.items():
        print(f"-- {method}", flush=True)
        _cli("eval", "zeroshot", "--checkpoint", run, "--dataset", f"scenes-scene:{data}")
        _cli("eval", "zeroshot", "--checkpoint", run, "--dataset", f"scenes-object:{data}")
        _cli("eval", "retrieval", "--checkpoint", run, "--dataset", f"scenes-retrieval:{data}")
        _cli("analyze", "--checkpoint", run, "--dataset", f"scenes-retrieval:{data}")

    _banner("5/5 report")
    report = out / "report.html"
    _cli("report", *runs.values(), "--out", report)

    width = max(len(r[0]) for r in ROWS)
    print(f"\n{'':{width}}  {'CLIP':>8}  {'CLOOB':>8}")
    for label, prefix, key in ROWS:
        cells = []
        for run in runs.values():
            v = _metric(run, prefix, key)
            cells.append("n/a" if v is None else f"{100 * v:.1f}")
        print(f"{label:{width}}  {cells[0]:>8}  {cells[1]:>8}")
    chance = "chance: scene 1/12 = 8.3 %, object 1/64 = 1.6 %, retrieval R@1 0.1 %"
    print(f"({chance}; one seed each: see `cloob experiment` for seeds and significance)")
    print(f"\nreport: {report}")
    print(f"demo wall time: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
