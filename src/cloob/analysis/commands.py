"""``cloob analyze`` and ``cloob report`` sub-commands (thin: parse, call, print)."""
from __future__ import annotations

import argparse


def cmd_analyze(args: argparse.Namespace) -> int:
    from cloob.analysis.analyze import analyze
    from cloob.device import default_device

    if not 0 < args.fraction <= 1:
        raise ValueError(f"--fraction must be in (0, 1], got {args.fraction}")
    if args.max_samples < 2:
        raise ValueError(f"--max-samples must be >= 2, got {args.max_samples}")
    result = analyze(args.checkpoint, args.dataset, args.out, max_samples=args.max_samples,
                     batch_size=args.batch_size, device=default_device(args.device), fraction=args.fraction,
                     k=args.k, workers=args.workers, model_name=args.model)
    for e in result["checkpoints"]:
        print(f"{e['label']}: n={e['n']} effective eigenvalues image {e['image']['effective_eigenvalues']} "
              f"text {e['text']['effective_eigenvalues']} | Ajne A image {e['image']['ajne']:.2f} "
              f"text {e['text']['ajne']:.2f} | alignment {e['alignment']:.3f} | "
              f"matched {e['similarity']['matched_mean']:.3f} vs top-{e['similarity']['k']} unmatched "
              f"{e['similarity']['unmatched_mean']:.3f} | InfoNCE a/(a+b) {e['saturation']['infonce_term']:.3f} "
              f"InfoLOOB a/b {e['saturation']['infoloob_term']:.3g}")
    for rc in result.get("relative_change", []):
        fmt = lambda v: "n/a" if v is None else f"{100 * v:+.1f}%"  # noqa: E731
        print(f"relative change {rc['from']} -> {rc['to']}: image {fmt(rc['image_effective_eigenvalues'])} "
              f"text {fmt(rc['text_effective_eigenvalues'])}")
    print(f"wrote {result['out']}/analysis.json and {len(result['figures'])} figures")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cloob.analysis.report import write_report

    path = write_report(args.runs, args.out, title=args.title)
    print(f"wrote {path}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("analyze", help="embedding diagnostics (eigenvalues, uniformity, similarities, "
                                       "saturation) of checkpoints on a dataset: analysis.json + PNGs")
    p.add_argument("--checkpoint", action="append", required=True,
                   help="model source: checkpoint dir, run dir (its latest) or weights file (cloob.model_source); "
                        "repeat to compare (relative change vs the first)")
    p.add_argument("--model", default=None, help="open_clip architecture of weights files that need it")
    p.add_argument("--dataset", required=True, help="pairs or retrieval spec, e.g. scenes-retrieval:DIR or x.csv")
    p.add_argument("--out", default=None, help="output dir (default <run of the first checkpoint>/analysis)")
    p.add_argument("--max-samples", type=int, default=2000, help="pairs to encode (default 2000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None, help="cpu or cuda (default cuda when available)")
    p.add_argument("--fraction", type=float, default=0.99, help="eigenvalue mass for the effective count")
    p.add_argument("--k", type=int, default=10, help="unmatched pairs per anchor in the similarity histogram")
    p.add_argument("--workers", type=int, default=0, help="data loader workers")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("report", help="one self-contained HTML report of runs: config, training curves, "
                                      "evaluation tables, diagnostics and a reading")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", default="report.html", help="output HTML file (default report.html)")
    p.add_argument("--title", default=None)
    p.set_defaults(func=cmd_report)
