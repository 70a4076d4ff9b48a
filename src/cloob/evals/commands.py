"""``cloob eval {zeroshot,retrieval,linear-probe,few-shot,knn,confusions}``, ``cloob finetune``, ``cloob compare``.

Every eval command loads a checkpoint (a checkpoint dir or a run dir), encodes the dataset
once (features cached under ``<checkpoint>/features/`` or ``--cache-dir``), writes
``<out>/<evaluator>-<dataset slug>.json`` (default ``<run>/eval/``) and prints a Markdown table.
Bad input: one line ``error: …`` on stderr, exit code 2.

Argument parsing only: the evaluators, their options and defaults are :mod:`cloob.evals.registry`'s; the
checkpoint, cache and result file are :mod:`cloob.evals.context`'s.
"""
from __future__ import annotations

from pathlib import Path

from cloob.evals import registry


def cmd_eval(args) -> int:
    """Run the evaluator ``args.evaluator`` (``cloob eval NAME`` or ``cloob finetune``) and print its summary."""
    ev = registry.get(args.evaluator)
    path, result = registry.evaluate(ev, args)
    print(registry.summary(ev, path, result))
    return 0


def cmd_compare(args) -> int:
    from cloob.evals.compare import compare_runs, to_markdown

    result = compare_runs(args.runs, args.out, metric_files=args.metric_files, group_by=args.group_by,
                          baseline=args.baseline, metrics=args.metric or None, alpha=args.alpha)
    print(to_markdown(result))
    print(f"wrote {Path(args.out) / 'compare.md'}, compare.csv, compare.json ({len(result['runs'])} runs)")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a checkpoint: zero-shot, retrieval, linear probe, few-shot, "
                                           "kNN, confusions")
    sub = p.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND", required=True)
    for ev in registry.EVALUATORS.values():
        s = sub.add_parser(ev.name, help=ev.help)
        ev.add_arguments(s)
        s.set_defaults(func=cmd_eval, evaluator=ev.name)

    f = subparsers.add_parser(registry.FINETUNE.name, help=registry.FINETUNE.help)
    registry.FINETUNE.add_arguments(f)
    f.set_defaults(func=cmd_eval, evaluator=registry.FINETUNE.name)

    c = subparsers.add_parser("compare", help="mean ± std per method over runs, Welch's t-test marks (Markdown/CSV)")
    c.add_argument("runs", nargs="+", metavar="RUN_GLOB", help="run directories or glob patterns")
    c.add_argument("--group-by", default="method", help="config.yaml key that names the method")
    c.add_argument("--metric-files", default="eval/*.json", help="glob of eval JSONs inside each run")
    c.add_argument("--metric", action="append", default=[], help="metric name/pattern to include (repeatable)")
    c.add_argument("--baseline", default=None, help="compare every method with this one (default: every pair)")
    c.add_argument("--alpha", type=float, default=0.05)
    c.add_argument("--out", required=True, help="output directory for compare.md/.csv/.json")
    c.set_defaults(func=cmd_compare)
