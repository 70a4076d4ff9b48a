"""`cloob eval …`, `cloob finetune`, `cloob compare` end to end on a random-init cloob-rn-tiny
checkpoint over a tiny scenes cache (and CIFAR-10 test when ../shared has it)."""
import json

import pytest

from cloob.cli import main


@pytest.fixture(scope="module")
def run(clip_run):
    return clip_run


def _json(path):
    return json.loads(path.read_text())


@pytest.mark.slow
def test_cli_end_to_end_on_scenes(run, capsys):
    run_dir, scenes = run
    common = ["--checkpoint", str(run_dir), "--batch-size", "20", "--device", "cpu"]
    ds = f"scenes-scene:{scenes}"
    assert main(["eval", "zeroshot", *common, "--dataset", ds]) == 0
    out = capsys.readouterr()
    res = _json(run_dir / "eval" / "zeroshot-scenes-scene-scenes.json")
    assert res["step"] == 5 and res["method"] == "clip" and res["dataset"] == ds and res["seconds"] > 0
    assert 0 <= res["metrics"]["top1"] <= 1 and "top5" in res["metrics"]
    n_classes = len(res["details"]["classes"])
    assert len(res["details"]["confusion_matrix"]) == n_classes
    assert "| top1 |" in out.out
    cache = list((run_dir / "checkpoints").glob("step-*/features/*.npz"))
    assert len(cache) == 1
    # a second evaluator of the same (checkpoint, dataset, transform) reuses the features
    assert main(["eval", "knn", *common, "--dataset", ds, "--k", "5"]) == 0
    assert "reusing" in capsys.readouterr().err
    assert list((run_dir / "checkpoints").glob("step-*/features/*.npz")) == cache
    assert main(["eval", "linear-probe", *common, "--dataset", ds]) == 0
    assert main(["eval", "few-shot", *common, "--dataset", ds, "--seeds", "2", "--max-log2-k", "2"]) == 0
    fs = _json(run_dir / "eval" / "few-shot-scenes-scene-scenes.json")
    assert "k=0/mean" in fs["metrics"] and (run_dir / "eval" / "few-shot-scenes-scene-scenes.png").is_file()
    assert main(["eval", "confusions", *common, "--dataset", ds]) == 0
    assert (run_dir / "eval" / "confusions-scenes-scene-scenes.png").is_file()
    assert main(["eval", "retrieval", *common, "--dataset", f"scenes-retrieval:{scenes}"]) == 0
    r = _json(run_dir / "eval" / "retrieval-scenes-retrieval-scenes.json")
    assert r["metrics"]["n_images"] == 40 and r["metrics"]["n_texts"] == 200
    assert main(["finetune", *common, "--dataset", ds, "--head", "cosine",
                 "--unfreeze", "last", "--max-steps", "2", "--epochs", "3", "--resize", "bilinear"]) == 0
    ft = _json(run_dir / "eval" / "finetune-cosine-last-scenes-scene-scenes.json")
    assert ft["metrics"]["steps"] == 2 and len(ft["details"]["template_weights"]) == 5
    assert (run_dir / "eval" / "finetune-cosine-last-scenes-scene-scenes.head.safetensors").is_file()
    assert main(["compare", str(run_dir), "--out", str(run_dir.parent / "cmp")]) == 0
    md = (run_dir.parent / "cmp" / "compare.md").read_text()
    assert "zeroshot" in md and "scenes-scene-scenes" in md


def test_cli_bad_input_is_one_line_and_exit_2(run, capsys, tmp_path):
    run_dir, scenes = run
    assert main(["eval", "zeroshot", "--checkpoint", str(run_dir), "--dataset", str(tmp_path / "nope.tar")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert main(["eval", "zeroshot", "--checkpoint", str(tmp_path), "--dataset", f"scenes-scene:{scenes}"]) == 2
    assert "no complete cloob checkpoint" in capsys.readouterr().err
    assert main(["eval", "zeroshot", "--checkpoint", str(run_dir), "--dataset", f"scenes-scene:{scenes}",
                 "--templates", "nope", "--no-cache"]) == 2


def test_eval_skips_a_damaged_latest_checkpoint_or_fails_in_one_line_when_it_is_named(run, capsys, tmp_path):
    import shutil

    run_dir, scenes = run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("eval", "features"))
    older = copy / "checkpoints" / "step-00000005"
    newer = copy / "checkpoints" / "step-00000006"
    shutil.copytree(older, newer)  # the manifest of step 5 holds for the copy until it is damaged
    weights = newer / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    argv = ["eval", "zeroshot", "--dataset", f"scenes-scene:{scenes}", "--no-cache", "--out", str(tmp_path / "out")]
    assert main(argv + ["--checkpoint", str(copy)]) == 0
    err = capsys.readouterr().err
    assert f"skipping damaged checkpoint {newer}: model.safetensors has 1000 bytes" in err
    assert _json(tmp_path / "out" / "zeroshot-scenes-scene-scenes.json")["checkpoint"] == str(older)
    assert main(argv + ["--checkpoint", str(newer)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: checkpoint {newer} is damaged: model.safetensors")


def test_cifar10_zeroshot_subset_if_shared_data_present(run, tmp_path):
    """Zero-shot over the real CIFAR-10 test tar (first images only, via the library API)."""
    import torch

    from cloob.data import image_transform, open_labelled, shared_dir
    from cloob.evals.templates import load_templates
    from cloob.evals.zeroshot import evaluate_zeroshot
    from cloob.models import get_tokenizer
    from cloob.model_source import load_model

    tar = shared_dir() / "data" / "cifar10" / "test.tar"
    if not tar.is_file():
        pytest.skip(f"CIFAR-10 test set not found at {tar} (set CLOOB_SHARED)")
    model, _ = load_model(run[0])
    ds = open_labelled("cifar10-test:", image_transform=image_transform(model, train=False))
    sub = torch.utils.data.Subset(ds, range(64))
    sub.classes = ds.classes
    m = evaluate_zeroshot(model, get_tokenizer(model.model_name), sub, templates=load_templates("cifar"))
    assert m["n"] == 64 and 0 <= m["top1"] <= 1 and "per_class/airplane" in m
