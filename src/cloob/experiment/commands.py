"""``cloob experiment``: argument parsing only (:mod:`cloob.experiment.runner` and ``.select`` do the work)."""
from __future__ import annotations

import argparse
import fnmatch
import sys

from cloob.experiment.grid import expand, load_grid
from cloob.experiment.runner import run_experiment
from cloob.experiment.select import select


def cmd_experiment(args: argparse.Namespace) -> int:
    """``--select``: the tuning summary of the cells run so far; otherwise run (or resume) the grid."""
    if args.select:
        g = load_grid(args.grid)
        cells = [c for c in expand(g) if not args.only or fnmatch.fnmatch(c.name, args.only)]
        select(g, cells, args.select)
        return 0
    return run_experiment(args.grid, parallel=args.parallel, dry_run=args.dry_run, only=args.only,
                          argv=["cloob", *sys.argv[1:]] if args.argv is None else args.argv)


def add_commands(sub) -> None:
    """Register ``cloob experiment`` on the ``cloob`` sub-command parser."""
    from cloob import experiment

    p = sub.add_parser("experiment", help="run a grid of train + eval cells (resumable), then compare and report",
                       description=experiment.__doc__.splitlines()[0])
    p.add_argument("--grid", required=True, help="grid YAML file (see experiments/)")
    p.add_argument("--parallel", type=int, default=None, help="cells at once (overrides the grid's parallel)")
    p.add_argument("--dry-run", action="store_true", help="print the cells and their commands; run nothing")
    p.add_argument("--only", default=None, metavar="PATTERN", help="run only cells whose name matches (fnmatch)")
    p.add_argument("--select", default=None, metavar="METRIC",
                   help="tuning summary only: best hyper-parameters per method -> <out>/best.json")
    p.set_defaults(func=cmd_experiment, argv=None)
