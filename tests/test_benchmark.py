"""`cloob benchmark` end to end on fabricated datasets and tiny random-init checkpoints.

The numbers of a random model are near chance; what is checked is that the benchmark computes the
same numbers as the single evaluators (`cloob eval zeroshot`), from every model source format, in
CLIP_benchmark's result schema, resumably, with one-line errors.
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cloob.cli import main

CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _checkpoint(run, method, seed):
    from cloob.checkpoint import save_checkpoint
    from cloob.models import create_model

    torch.manual_seed(seed)
    model, _, _ = create_model("cloob-rn-tiny")
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"method: {method}\nseed: {seed}\nmodel: cloob-rn-tiny\n")
    save_checkpoint(run / "checkpoints", 7, model.clip.state_dict(), {"extras": {}},
                    {"model": "cloob-rn-tiny", "method": method, "step": 7, "config": {"seed": seed, "method": method}})
    return model


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Three runs (clip seeds 0 and 1, cloob seed 0) and a root with cifar10 in the reference zeroshot layout."""
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    for c, name in enumerate(CIFAR):
        d = root / "data" / "cifar10" / "test" / name
        d.mkdir(parents=True)
        for i in range(3):
            base = np.zeros((32, 32, 3), np.uint8) + np.uint8(20 * c)
            Image.fromarray(base + rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)).save(d / f"{i}.png")
    runs = {"clip-s0": ("clip", 0), "clip-s1": ("clip", 1), "cloob-s0": ("cloob", 0)}
    models = {k: _checkpoint(root / "runs" / k, *v) for k, v in runs.items()}
    return root, models


def _results(out):
    return {p.name: json.loads(p.read_text()) for p in out.glob("*.json")}


def test_benchmark_matches_eval_zeroshot_in_clip_benchmark_schema(world, capsys):
    root, _ = world
    run, out = root / "runs" / "clip-s0", root / "out-one"
    assert main(["benchmark", "--model-source", str(run), "--suite", "cifar10", "--root", str(root / "data"),
                 "--out", str(out), "--batch-size", "16", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    res = _results(out)["cifar10_clip-s0_zeroshot_classification.json"]
    assert {k: res[k] for k in ("dataset", "model", "task", "language")} == {
        "dataset": "cifar10", "model": "cloob-rn-tiny", "task": "zeroshot_classification", "language": "en"}
    assert res["pretrained"] == str(run) and set(res["metrics"]) == {"acc1", "acc5", "mean_per_class_recall"}
    assert res["cloob"]["n"] == 30 and res["cloob"]["classes"] == 10
    assert "| cifar10 |" in printed and (out / "table.md").is_file() and (out / "table.csv").is_file()
    # CLIP_benchmark's own `build` reads the JSONs into its CSV
    import argparse
    import csv

    from clip_benchmark.cli import main_build

    main_build(argparse.Namespace(files=[str(out)], output=str(root / "built.csv")))
    built = list(csv.DictReader(open(root / "built.csv")))
    assert [(r["dataset"], r["task"], float(r["acc1"])) for r in built] == [
        ("cifar10", "zeroshot_classification", res["metrics"]["acc1"])]
    # the single evaluator on the same folder with CLIP's CIFAR templates gives the same top-1
    assert main(["eval", "zeroshot", "--checkpoint", str(run), "--dataset", str(root / "data" / "cifar10" / "test"),
                 "--templates", "cifar", "--out", str(root / "eval-one"), "--device", "cpu", "--no-cache"]) == 0
    single = json.loads((root / "eval-one" / "zeroshot-test.json").read_text())
    assert res["metrics"]["acc1"] == pytest.approx(single["metrics"]["top1"], abs=1e-3)
    assert res["metrics"]["acc5"] == pytest.approx(single["metrics"]["top5"], abs=1e-3)


def test_open_clip_epoch_file_gives_the_same_number(world, tmp_path):
    root, models = world
    epoch = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in models["clip-s0"].clip.state_dict().items()}},
               epoch)
    out = tmp_path / "out"
    assert main(["benchmark", "--model-source", str(root / "runs" / "clip-s0"), str(epoch), "--model", "cloob-rn-tiny",
                 "--suite", "cifar10", "--root", str(root / "data"), "--out", str(out), "--group-by", "none",
                 "--device", "cpu"]) == 0
    res = _results(out)
    run_acc = res["cifar10_clip-s0_zeroshot_classification.json"]["metrics"]["acc1"]
    file_acc = res["cifar10_epoch_1.pt_zeroshot_classification.json"]["metrics"]["acc1"]
    assert file_acc == pytest.approx(run_acc, abs=1e-3)
    assert res["cifar10_epoch_1.pt_zeroshot_classification.json"]["cloob"]["format"] == "open_clip_train"


def test_methods_are_grouped_and_finished_results_are_skipped(world, monkeypatch, capsys):
    root, _ = world
    runs = [str(root / "runs" / k) for k in ("clip-s0", "clip-s1", "cloob-s0")]
    out = root / "out-grouped"
    args = ["benchmark", "--model-source", *runs, "--suite", "cifar10", "--root", str(root / "data"),
            "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    table = json.loads((out / "summary" / "benchmark.json").read_text())["table"]
    assert table["columns"] == ["clip", "cloob"]
    cell = table["rows"][0]["cells"]["clip"]
    accs = [100 * r["metrics"]["acc1"] for n, r in _results(out).items() if "_clip-s" in n]
    assert cell["n"] == 2 and cell["mean"] == pytest.approx(np.mean(accs))
    assert cell["std"] == pytest.approx(np.std(accs, ddof=1), nan_ok=True)
    capsys.readouterr()

    def never(*a, **k):
        raise AssertionError("a finished result loaded its model again")

    monkeypatch.setattr("cloob.model_source.load_model", never)
    assert main(args) == 0
    assert capsys.readouterr().err.count("done earlier") == 3


def test_missing_dataset_is_one_line_naming_the_layout(world, capsys):
    root, _ = world
    code = main(["benchmark", "--model-source", str(root / "runs" / "clip-s0"), "--suite", "paper",
                 "--root", str(root / "data"), "--out", str(root / "out-missing"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: birdsnap") and str(root / "data") in err[-1]
    assert "test/<class>" in err[-1]
