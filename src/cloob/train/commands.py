"""`cloob train`: parse the config and flags, run, report."""
from __future__ import annotations

import argparse
import signal

from cloob.train.config import add_arguments, build_config


def cmd_train(args: argparse.Namespace) -> int:
    from cloob.train.loop import train

    # bad input (config, data, model, checkpoint) ends in cli.main's one error line, exit 2; divergence exit 3
    summary = train(build_config(args.config, args))
    from cloob.distributed import get_rank

    if summary["interrupted"]:
        # stopped, not finished: 128 + the signal number (143 SIGTERM, 130 SIGINT), as a shell reports it, so a
        # scheduler can tell; a process that only learnt of the stop from another rank reports SIGTERM
        return 128 + (summary.get("signal") or signal.SIGTERM)
    if get_rank() == 0:
        m = "".join(f", {k} {v:.4f}" for k, v in summary["metrics"].items())
        print(f"done: {summary['step']} steps in {summary['seconds']:.1f} s{m}; run dir {summary['run_dir']}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="train CLIP, CLOOB or an ablation cell (also under torchrun)",
                       description="Train from a YAML config; every config key is also a flag.")
    p.add_argument("--config", help="YAML file of config keys (see configs/)")
    add_arguments(p)
    p.set_defaults(func=cmd_train)
