"""cloob.evals.registry: the one list of evaluators that `cloob eval`, `cloob experiment` and `cloob benchmark`
read, its parser (same namespace as the CLI's, errors raised rather than exits) and an in-process run that writes
what `cloob eval` writes."""
import json

import pytest

from cloob.cli import build_parser, main
from cloob.evals import registry
from cloob.evals.registry import EVALUATORS, EvalArgumentError, parse_args


def _subcommands(parser, *path):
    import argparse

    for name in path:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_cloob_eval_and_experiment_name_the_registry_evaluators():
    from cloob.experiment import GridError

    assert list(_subcommands(build_parser(), "eval")) == list(EVALUATORS)
    assert "finetune" in _subcommands(build_parser()) and "finetune" not in EVALUATORS
    assert list(EVALUATORS) == ["zeroshot", "retrieval", "linear-probe", "few-shot", "knn", "confusions"]
    from cloob.experiment.grid import _check_evals

    assert _check_evals([["finetune", "x", "--unfreeze", "all"]], "grid") == [["finetune", "x", "--unfreeze", "all"]]
    with pytest.raises(GridError, match="expected one of zeroshot, retrieval, linear-probe, few-shot, knn, confusions, "
                                        "finetune"):
        _check_evals([["fine-tune", "x"]], "grid")


@pytest.mark.parametrize("name", list(EVALUATORS) + ["finetune"])
def test_parse_args_gives_the_cli_namespace_and_the_declared_defaults(name):
    argv = ["--checkpoint", "ck", "--dataset", "ds"]
    cli = vars(build_parser().parse_args(([] if name == "finetune" else ["eval"]) + [name] + argv))
    ours = vars(parse_args(name, argv))
    for key in ("func", "command", "eval_command"):
        cli.pop(key, None)
    assert ours == cli
    defaults = registry.get(name).defaults()
    assert {k: ours[k] for k in defaults if k not in ("checkpoint", "dataset")} == {
        k: v for k, v in defaults.items() if k not in ("checkpoint", "dataset")}


def test_parse_args_raises_instead_of_exiting_and_reads_negative_numbers():
    with pytest.raises(EvalArgumentError, match="unknown evaluator 'zero-shot'"):
        parse_args("zero-shot", [])
    with pytest.raises(EvalArgumentError, match="cloob eval knn: the following arguments are required: --dataset"):
        parse_args("knn", ["--checkpoint", "x"])
    with pytest.raises(EvalArgumentError, match="invalid choice: 'cosine'"):
        parse_args("knn", ["--checkpoint", "x", "--dataset", "y", "--weighting", "cosine"])
    assert parse_args("knn", ["--checkpoint", "x", "--dataset", "y", "--temperature", "-1e-3"]).temperature == -1e-3


def test_benchmark_reads_the_registry():
    from cloob import benchmark

    assert benchmark.TASKS == {"zeroshot": "zeroshot_classification", "retrieval": "zeroshot_retrieval",
                               "linear-probe": "linear_probe"}
    assert set(benchmark.TASKS.values()) == set(benchmark.RUNNERS)
    assert (benchmark.BATCH_SIZE, benchmark.WORKERS) == (256, 0) == (
        registry.common_default("batch_size"), registry.common_default("workers"))
    args = build_parser().parse_args(["benchmark", "--model-source", "m", "--suite", "paper", "--root", "r",
                                      "--out", "o"])
    assert (args.batch_size, args.workers) == (256, 0)


@pytest.mark.slow
def test_evaluate_in_process_writes_what_cloob_eval_writes(tmp_path, capsys):
    import torch

    from cloob.checkpoint import save_checkpoint
    from cloob.data.scenes import generate_scenes
    from cloob.models import create_model

    generate_scenes(tmp_path / "scenes", n=8, size=32, n_eval=24, workers=1)
    torch.manual_seed(0)
    model, _, _ = create_model("cloob-rn-tiny")
    save_checkpoint(tmp_path / "run" / "checkpoints", 2, model.clip.state_dict(), {"extras": {}},
                    {"model": "cloob-rn-tiny", "method": "cloob", "step": 2, "config": {"seed": 1}})
    argv = ["--checkpoint", str(tmp_path / "run"), "--dataset", f"scenes-scene:{tmp_path / 'scenes'}",
            "--device", "cpu", "--no-cache", "--k", "3"]
    ev = registry.get("knn")
    path, result = registry.evaluate(ev, parse_args("knn", argv + ["--out", str(tmp_path / "a")]))
    assert path == tmp_path / "a" / "knn-scenes-scene-scenes.json" and json.loads(path.read_text()) == result
    assert result["evaluator"] == "knn" and result["step"] == 2 and result["seed"] == 1
    text = registry.summary(ev, path, result)
    assert text.startswith("## knn · scenes-scene:") and text.endswith(f"wrote {path}")
    assert main(["eval", "knn", *argv, "--out", str(tmp_path / "b")]) == 0
    assert "| top1 |" in capsys.readouterr().out
    cli = json.loads((tmp_path / "b" / path.name).read_text())
    assert cli["metrics"] == result["metrics"] and cli["details"] == result["details"]
