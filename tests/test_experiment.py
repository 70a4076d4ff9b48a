"""`cloob experiment`: grid validation, cell expansion, dry run, tuning selection, and a tiny real grid
(train + zero-shot per cell, compare, report) that skips finished cells, resumes an interrupted one and
restores its archived cells in an empty out directory."""
import json
import os

import pytest
import yaml

from cloob.cli import main
from cloob.experiment import GridError, expand, load_grid, metric_value, select


def write_grid(tmp_path, grid: dict, name="grid.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def minimal(tmp_path, **extra):
    g = {"name": "t", "out": str(tmp_path / "out"), "set": {"train_data": "scenes:x", "max_steps": 3},
         "grid": {"method": ["clip", "cloob"], "seed": [0, 1]}}
    g.update(extra)
    return g


@pytest.mark.parametrize("change, message", [
    ({"sett": {}}, "unknown key 'sett' (did you mean 'set'?)"),
    ({"set": {"batch_sise": 3}}, "set: unknown key 'batch_sise' (did you mean 'batch_size'?)"),
    ({"grid": {"batch_size": ["big"]}}, "batch_size must be an integer"),
    ({"grid": {"dataset": ["nope"]}}, "grid.dataset value 'nope' is not an entry of datasets"),
    ({"grid": {"seed": []}}, "grid.seed is an empty list"),
    ({"evals": [["zero-shot", "x"]]}, "unknown evaluator 'zero-shot'"),
    ({"evals": ["zeroshot"]}, "each entry must be [evaluator, dataset spec"),
    ({"evals": [["knn", "x", "--kk", "5"]]}, "cloob eval knn: unrecognized arguments: --kk 5"),
    ({"evals": [["knn", "x", "--k", "five"]]}, "argument --k: invalid int value: 'five'"),
    ({"per_method": {"clop": {"inv_tau": 3.0}}}, "per_method: unknown method 'clop'"),
    ({"axes_for": {"clip": ["hopfield_beta"]}}, "axes_for.clip: ['hopfield_beta'] are not grid axes"),
    ({"prepare": [{"sceness": {}}]}, "prepare entries are {kind: {options}}"),
    ({"base": "no/such.yaml"}, "base config no/such.yaml does not exist"),
    ({"compare": {"baseline": "clip", "alpah": 0.1}}, "compare: unknown key 'alpah'"),
])
def test_invalid_grids_are_refused_with_the_key_named(tmp_path, change, message):
    with pytest.raises(GridError) as e:
        load_grid(write_grid(tmp_path, minimal(tmp_path, **change)))
    assert message in str(e.value)


def test_missing_required_key_and_invalid_cell_values(tmp_path):
    g = minimal(tmp_path)
    del g["grid"]
    with pytest.raises(GridError, match="grid is required"):
        load_grid(write_grid(tmp_path, g))
    g = minimal(tmp_path, grid={"method": ["clip", "clop"]})
    with pytest.raises(GridError, match="cell clop: method must be one of"):
        expand(load_grid(write_grid(tmp_path, g)))


def test_cells_are_the_cross_product_named_by_axis_values_with_overrides_in_order(tmp_path):
    g = minimal(tmp_path, set={"train_data": "scenes:x", "max_steps": 3, "inv_tau": 5.0, "batch_size": 8},
                grid={"method": ["clip", "cloob"], "inv_tau": [10.0, 20.0], "seed": [0, 1]},
                per_method={"cloob": {"inv_tau": 30.0}})
    cells = expand(load_grid(write_grid(tmp_path, g)))
    assert [c.name for c in cells] == [
        "clip-inv_tau10.0-s0", "clip-inv_tau10.0-s1", "clip-inv_tau20.0-s0", "clip-inv_tau20.0-s1",
        "cloob-inv_tau10.0-s0", "cloob-inv_tau10.0-s1", "cloob-inv_tau20.0-s0", "cloob-inv_tau20.0-s1"]
    by = {c.name: c for c in cells}
    assert by["clip-inv_tau20.0-s1"].config["inv_tau"] == 20.0  # grid beats set
    assert by["clip-inv_tau20.0-s1"].config["seed"] == 1
    assert by["cloob-inv_tau10.0-s0"].config["inv_tau"] == 30.0  # per_method beats grid
    assert by["cloob-inv_tau10.0-s0"].config["batch_size"] == 8  # set reaches every cell
    c = by["clip-inv_tau10.0-s0"]
    assert c.config["run_dir"] == str(tmp_path / "out" / c.name) and c.config["resume"] == "auto"


def test_axes_for_drops_other_axes_and_duplicate_cells(tmp_path):
    g = minimal(tmp_path, grid={"method": ["clip", "cloob"], "inv_tau": [10.0, 30.0], "hopfield_beta": [8.0, 14.3],
                                "seed": [0]},
                axes_for={"clip": ["inv_tau"]})
    names = [c.name for c in expand(load_grid(write_grid(tmp_path, g)))]
    assert names[:2] == ["clip-inv_tau10.0-s0", "clip-inv_tau30.0-s0"]
    assert len(names) == 2 + 4 and "cloob-inv_tau30.0-hopfield_beta14.3-s0" in names


def test_dataset_axis_takes_overrides_and_evals_from_datasets(tmp_path):
    g = minimal(tmp_path, datasets={"a": {"train_data": "scenes:a", "evals": [["zeroshot", "scenes-scene:a"]]},
                                    "b": {"train_data": "scenes:b"}},
                grid={"dataset": ["a", "b"], "method": ["cloob"]}, evals=[["retrieval", "scenes-retrieval:b"]])
    cells = expand(load_grid(write_grid(tmp_path, g)))
    assert [(c.name, c.config["train_data"], c.evals[0][0]) for c in cells] == [
        ("a-cloob", "scenes:a", "zeroshot"), ("b-cloob", "scenes:b", "retrieval")]


def test_dry_run_prints_commands_and_runs_nothing(tmp_path, capsys):
    g = minimal(tmp_path, evals=[["zeroshot", "scenes-scene:x"]], prepare=[{"scenes": {"out": str(tmp_path / "s"),
                                                                                         "n": 10}}])
    assert main(["experiment", "--grid", str(write_grid(tmp_path, g)), "--dry-run", "--only", "cloob-*"]) == 0
    out = capsys.readouterr().out
    assert "2 cells" in out and "cloob-s0" in out and "clip-s0" not in out
    assert f"cloob train --config {tmp_path / 'out' / 'cloob-s1' / 'cell.yaml'}" in out
    assert "cloob eval zeroshot --checkpoint" in out
    assert not (tmp_path / "out").exists() and not (tmp_path / "s").exists()


def test_a_threads_key_fixes_the_threads_of_every_cell(tmp_path, capsys):
    g = minimal(tmp_path)
    g["set"]["threads"] = 1
    assert main(["experiment", "--grid", str(write_grid(tmp_path, g)), "--dry-run", "--parallel", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("--threads 1") == 4 and "--threads 2" not in out


def test_cli_errors_are_one_line_with_exit_2(tmp_path, capsys):
    assert main(["experiment", "--grid", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: grid file") and err.count("\n") == 1


def _fake_eval(cell_dir, top1_scene, top1_object):
    (cell_dir / "eval").mkdir(parents=True)
    for split, v in (("scene", top1_scene), ("object", top1_object)):
        (cell_dir / "eval" / f"zeroshot-scenes-{split}-val.json").write_text(json.dumps({"metrics": {"top1": v}}))


def test_select_picks_the_best_per_method_averaged_over_seeds(tmp_path, capsys):
    g = minimal(tmp_path, grid={"method": ["clip", "cloob"], "inv_tau": [10.0, 30.0], "hopfield_beta": [8.0, 14.3],
                                "seed": [0, 1]},
                axes_for={"clip": ["inv_tau"]})
    grid = write_grid(tmp_path, g)
    cells = expand(load_grid(grid))
    values = {  # clip: inv_tau 30 best on average though 10 wins seed 0; cloob: (10, 14.3) best
        "clip-inv_tau10.0-s0": 0.9, "clip-inv_tau10.0-s1": 0.1, "clip-inv_tau30.0-s0": 0.6, "clip-inv_tau30.0-s1": 0.6,
        "cloob-inv_tau10.0-hopfield_beta14.3-s0": 0.8, "cloob-inv_tau10.0-hopfield_beta14.3-s1": 0.7,
        "cloob-inv_tau30.0-hopfield_beta8.0-s0": 0.2}
    for c in cells:
        if c.name in values:
            _fake_eval(c.dir, values[c.name], values[c.name])
    assert main(["experiment", "--grid", str(grid), "--select", "zeroshot-scenes-scene*/top1"]) == 0
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert best["best"]["clip"] == {"inv_tau": 30.0, "value": pytest.approx(0.6), "n": 2}
    assert best["best"]["cloob"] == {"inv_tau": 10.0, "hopfield_beta": 14.3, "value": pytest.approx(0.75), "n": 2}
    assert len(best["sweep"]) == len(values)
    assert 'cloob: {"inv_tau": 10.0, "hopfield_beta": 14.3}' in capsys.readouterr().out
    select(load_grid(grid), cells, "min:zeroshot-scenes-scene*/top1,zeroshot-scenes-object*/top1")
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert best["mode"] == "min" and best["best"]["cloob"]["inv_tau"] == 30.0
    with pytest.raises(GridError, match="matches several eval files"):
        select(load_grid(grid), cells, "zeroshot-*/top1")
    with pytest.raises(GridError, match="must be <eval file stem glob>/<metric key>"):
        select(load_grid(grid), cells, "top1")
    with pytest.raises(GridError, match="has no numeric metric 'top5'; it has \\['top1'\\]"):
        select(load_grid(grid), cells, "zeroshot-scenes-scene*/top5")


def test_select_reads_a_metric_key_that_holds_a_slash(tmp_path):
    """The stem ends at the first "/" (cloob.analysis.runs.cell_metric): "retrieval-*/image_to_text/R@1" is the
    key "image_to_text/R@1" of retrieval-*.json (split at the last "/", it would look for a file that is not there)."""
    g = minimal(tmp_path, grid={"method": ["clip"], "inv_tau": [10.0, 30.0], "seed": [0]})
    grid = write_grid(tmp_path, g)
    cells = expand(load_grid(grid))
    for c, v in zip(cells, (0.25, 0.75)):
        (c.dir / "eval").mkdir(parents=True)
        (c.dir / "eval" / "retrieval-scenes-retrieval-val.json").write_text(json.dumps(
            {"metrics": {"image_to_text/R@1": v, "text_to_image/R@1": 1 - v}}))
    select(load_grid(grid), cells, "retrieval-*/image_to_text/R@1")
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert best["best"]["clip"] == {"inv_tau": 30.0, "value": 0.75, "n": 1}
    assert metric_value(cells[0].dir, "retrieval-*/text_to_image/R@1") == 0.75


@pytest.mark.slow
def test_a_cell_runs_its_evaluations_in_process_through_the_registry(tmp_path, monkeypatch):
    """Training stays a subprocess (faked here); the evaluations are no subprocess: they write `cloob eval`'s
    files under <cell>/eval, and a failing one fails the cell with its one-line reason."""
    import torch

    from cloob.checkpoint import save_checkpoint
    from cloob.data.scenes import generate_scenes
    from cloob.experiment import run_cell
    from cloob.models import create_model

    generate_scenes(tmp_path / "scenes", n=8, size=32, n_eval=24, workers=1)
    spec = f"scenes-scene:{tmp_path / 'scenes'}"
    g = minimal(tmp_path, set={"train_data": f"scenes:{tmp_path / 'scenes'}", "max_steps": 2, "model": "cloob-rn-tiny"},
                grid={"method": ["clip"]}, evals=[["zeroshot", spec, "--device", "cpu"],
                                                  ["knn", "scenes-scene:/no/such/cache", "--device", "cpu"]])
    (cell,) = expand(load_grid(write_grid(tmp_path, g)))
    model, _, _ = create_model("cloob-rn-tiny")
    save_checkpoint(cell.dir / "checkpoints", 2, model.clip.state_dict(), {"extras": {}},
                    {"model": "cloob-rn-tiny", "method": "clip", "step": 2, "config": cell.config})
    started = []
    monkeypatch.setattr("cloob.experiment.runner.subprocess.call", lambda argv, **k: started.append(argv) or 0)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, ""))
    threads = torch.get_num_threads()
    try:
        r = run_cell(cell, load_grid(write_grid(tmp_path, g)), 1, 1)
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"  # the cell's threads
    finally:
        torch.set_num_threads(threads)
    assert [argv[3] for argv in started] == ["train"]  # no `cloob eval` subprocess
    assert r["status"] == "failed" and not (cell.dir / "DONE").exists()
    assert r["error"].startswith("`cloob eval knn --checkpoint") and "no scenes cache at '/no/such/cache'" in r["error"]
    result = json.loads((cell.dir / "eval" / "zeroshot-scenes-scene-scenes.json").read_text())
    assert result["step"] == 2 and result["dataset"] == spec and 0 <= result["metrics"]["top1"] <= 1


# ------------------------------------------------------------- a tiny real grid
@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from cloob.data.scenes import generate_scenes

    root = tmp_path_factory.mktemp("scenes")
    generate_scenes(root, n=96, size=32, n_eval=24, workers=1)
    return root


def tiny_grid(tmp_path, scenes):
    return write_grid(tmp_path, {
        "name": "tiny", "out": str(tmp_path / "out"), "archive": str(tmp_path / "results"),
        "set": {"model": "cloob-vit-tiny", "train_data": f"scenes:{scenes}", "batch_size": 16, "max_steps": 3,
                "save_every": 2, "eval_every": 3, "log_every": 1, "lr": 1e-3, "threads": 1},
        "grid": {"method": ["clip", "cloob"], "seed": [0]},
        "evals": [["zeroshot", f"scenes-scene:{scenes}", "--batch-size", "24"]],
        "compare": {"baseline": "clip"},
    })


@pytest.mark.slow
def test_tiny_grid_runs_end_to_end_skips_finished_and_resumes_interrupted(tmp_path, scenes, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = tiny_grid(tmp_path, scenes)
    out = tmp_path / "out"
    assert main(["experiment", "--grid", str(grid)]) == 0
    text = capfd.readouterr().out
    assert "[1/2] start clip-s0" in text and "[2/2] done cloob-s0" in text
    for cell in ("clip-s0", "cloob-s0"):
        assert (out / cell / "DONE").is_file()
        assert (out / cell / "eval" / f"zeroshot-scenes-scene-{scenes.name}.json").is_file()
        assert json.loads((out / cell / "DONE").read_text())["step"] == 3
    assert (out / "compare" / "compare.md").is_file() and (out / "report.html").is_file()
    summary = json.loads((out / "experiment.json").read_text())
    assert [c["status"] for c in summary["cells"]] == ["done", "done"] and summary["wall_seconds"] > 0
    assert "name: tiny" in summary["grid_text"]
    assert [c["name"] for c in json.loads((out / "cells.json").read_text())] == ["clip-s0", "cloob-s0"]
    # the runner's in-process evaluation is `cloob eval`'s: same metrics from the same checkpoint and data
    spec = f"scenes-scene:{scenes}"
    assert main(["eval", "zeroshot", "--checkpoint", str(out / "clip-s0"), "--dataset", spec, "--batch-size", "24",
                 "--no-cache", "--out", str(tmp_path / "cli")]) == 0
    name = f"zeroshot-scenes-scene-{scenes.name}.json"
    by_runner, by_cli = (json.loads(p.read_text()) for p in (out / "clip-s0" / "eval" / name, tmp_path / "cli" / name))
    assert by_runner["metrics"] == pytest.approx(by_cli["metrics"]) and by_runner["checkpoint"] == by_cli["checkpoint"]

    # interrupt cloob-s0 after step 2: its final checkpoint, evals and DONE are gone
    ckpts = out / "cloob-s0" / "checkpoints"
    import shutil

    shutil.rmtree(ckpts / "step-00000003")
    shutil.rmtree(out / "cloob-s0" / "eval")
    (out / "cloob-s0" / "DONE").unlink()
    shutil.rmtree(tmp_path / "results" / "cloob-s0")  # an interrupted cell was never archived
    step2 = os.stat(ckpts / "step-00000002" / "model.safetensors").st_mtime_ns
    clip_final = os.stat(out / "clip-s0" / "checkpoints" / "step-00000003" / "model.safetensors").st_mtime_ns
    assert main(["experiment", "--grid", str(grid), "--parallel", "2"]) == 0  # logs go to <cell>/*.log
    text = capfd.readouterr().out
    assert "[1/2] skip clip-s0 (finished" in text and "[2/2] done cloob-s0" in text
    log = (out / "cloob-s0" / "train.log").read_text()
    assert "resumed from" in log and "(step 2," in log
    eval_log = (out / "cloob-s0" / "eval.log").read_text()
    assert "$ cloob eval zeroshot --checkpoint" in eval_log and "| top1 |" in eval_log and "wrote" in eval_log
    assert os.stat(ckpts / "step-00000002" / "model.safetensors").st_mtime_ns == step2
    assert (ckpts / "step-00000003").is_dir() and (out / "cloob-s0" / "DONE").is_file()
    assert os.stat(out / "clip-s0" / "checkpoints" / "step-00000003" / "model.safetensors").st_mtime_ns == clip_final
    assert [c["status"] for c in json.loads((out / "experiment.json").read_text())["cells"]] == ["skipped", "done"]
    # the resumed cell's clock and wall time go on from its checkpoint: the first run's training is counted
    kept = json.loads((ckpts / "step-00000002" / "meta.json").read_text())["train_seconds"]
    done = json.loads((out / "cloob-s0" / "DONE").read_text())
    assert kept > 0 and done["resumed_at_step"] == 2 and done["seconds_before_resume"] == pytest.approx(kept, abs=0.01)
    assert done["seconds"] > kept
    clock = [(r["step"], r["time"]) for r in map(json.loads, (out / "cloob-s0" / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "train"]
    assert [s for s, _ in clock] == [1, 2, 3] and clock[2][1] > clock[1][1] >= kept - 0.5
    from cloob.analysis.runs import cell_seconds, train_seconds

    assert cell_seconds(out / "cloob-s0") == done["seconds"] and train_seconds(out / "cloob-s0") == clock[2][1]

    # a fresh clone: runs/ is gone but the archive was committed; nothing trains again, the tables still work
    assert sorted(p.parent.name for p in (tmp_path / "results").glob("*/DONE")) == ["clip-s0", "cloob-s0"]
    assert not list((tmp_path / "results").rglob("*.safetensors"))
    shutil.rmtree(out)
    assert main(["experiment", "--grid", str(grid)]) == 0
    text = capfd.readouterr().out
    assert "restored 2 finished cell(s)" in text and "[2/2] skip cloob-s0 (finished" in text
    assert not (out / "clip-s0" / "checkpoints").exists()
    assert (out / "compare" / "compare.md").is_file() and (out / "report.html").is_file()


@pytest.mark.parametrize("name, n_cells", [("ablation-scenes", 20), ("cifar10", 10), ("tune-scenes", 24),
                                           ("tune-cifar10", 12), ("tune-towers-cifar10", 4),
                                           ("tune-towers-scenes", 4), ("towers-cifar10", 18), ("towers-scenes", 18),
                                           ("tune-flickr8k", 12), ("tune-siglip-scenes", 12), ("flickr8k", 36),
                                           ("budget-siglip-scenes", 12), ("budget-siglip-cifar10", 12)])
def test_shipped_grids_are_valid_and_tuning_never_reads_a_test_split(name, n_cells, monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    g = load_grid(root / "experiments" / f"{name}.yaml")
    cells = expand(g)
    assert len(cells) == n_cells
    if name.startswith("tune-"):
        for c in cells:
            specs = [e[1] for e in c.evals] + list(c.config.get("zeroshot") or [])
            assert not any("cifar10-test" in s or s.startswith("cifar10:") or "scenes-demo" in s
                           or "flickr8k-test" in s for s in specs), specs


# ------------------------------------------------------------- sources: evaluated-only models beside trained ones
@pytest.mark.parametrize("entry, message", [
    ({"checkpoint": "a", "train": {}}, "give exactly one of checkpoint, timm (with weights) or train"),
    ({"label": "x"}, "give exactly one of checkpoint"),
    ({"timm": "resnet18"}, "timm and weights go together"),
    ({"checkpoint": "a", "seeds": "0"}, "seeds must be a list of integers"),
    ({"checkpoint": "a", "weigths": "w"}, "unknown key 'weigths' (did you mean 'weights'?)"),
    ({"train": {"batch_sise": 3}}, "sources.s.train: unknown key 'batch_sise'"),
    ({"checkpoint": "a", "evals": [["knn", "x", "--features", "both"]]}, "argument --features: invalid choice"),
])
def test_invalid_sources_are_refused_with_the_key_named(tmp_path, entry, message):
    g = minimal(tmp_path, sources={"s": entry}, grid={"seed": [0], "source": ["s"]})
    with pytest.raises(GridError) as e:
        load_grid(write_grid(tmp_path, g))
    assert message in str(e.value)


def test_sources_expand_to_evaluated_only_and_trained_cells(tmp_path, capsys):
    evals = [["knn", "scenes-scene:x", "--k", "3"]]
    g = minimal(tmp_path, set={"train_data": "scenes:x", "max_steps": 3, "threads": 1}, evals=evals, sources={
        "net": {"label": "imagenet", "checkpoint": "imagenet:efficientnet-lite0",
                "evals": [["linear-probe", "scenes-scene:x", "--image-size", "64"],
                          ["finetune", "scenes-scene:x", "--unfreeze", "all", "--seed", "{seed}"]]},
        "clip": {"checkpoint": "runs/b/clip-s{seed}", "seeds": [0, 2]},
        "t": {"timm": "resnet18", "weights": "r18.safetensors"},
        "lit": {"label": "lit-clip", "train": {"model": "cloob-minilm-rn-tiny", "method": "cloob"}},
    }, grid={"seed": [0, 1], "source": ["net", "clip", "t", "lit"]}, per_method={"cloob": {"inv_tau": 10.0}})
    path = write_grid(tmp_path, g)
    cells = {c.name: c for c in expand(load_grid(path))}
    assert list(cells) == ["s0-net", "s0-clip", "s0-t", "s0-lit", "s1-net", "s1-t", "s1-lit"]  # clip: seeds 0, 2
    assert cells["s0-clip"].source == {"checkpoint": "runs/b/clip-s0"}
    assert cells["s1-net"].config["label"] == "imagenet" and cells["s1-net"].config["seed"] == 1
    assert cells["s1-net"].config["threads"] == 1 and cells["s0-t"].evals == evals
    lit = cells["s0-lit"]
    assert lit.source is None and lit.config["model"] == "cloob-minilm-rn-tiny" and lit.config["label"] == "lit-clip"
    assert lit.config["inv_tau"] == 10.0  # per_method of the trained source's method
    assert main(["experiment", "--grid", str(path), "--dry-run", "--only", "s0-*"]) == 0
    out = capsys.readouterr().out
    assert (f"cloob eval linear-probe --checkpoint imagenet:efficientnet-lite0 --dataset scenes-scene:x --out "
            f"{tmp_path / 'out' / 's0-net' / 'eval'} --image-size 64") in out
    assert "cloob finetune --checkpoint imagenet:efficientnet-lite0 --dataset scenes-scene:x" in out
    assert cells["s1-net"].evals[1][-2:] == ["--seed", "1"] and cells["s0-net"].evals[1][-2:] == ["--seed", "0"]
    assert "cloob eval knn --timm resnet18 --weights r18.safetensors --dataset scenes-scene:x --out" in out
    assert f"cloob train --config {tmp_path / 'out' / 's0-lit' / 'cell.yaml'}" in out
    assert f"cloob train --config {tmp_path / 'out' / 's0-net'}" not in out


@pytest.mark.slow
def test_an_evaluated_only_grid_runs_archives_and_compares(tmp_path, scenes, capfd, monkeypatch):
    import torch

    from cloob.checkpoint import save_checkpoint
    from cloob.models import create_model

    monkeypatch.chdir(tmp_path)
    for seed in (0, 1):
        torch.manual_seed(seed)
        model, _, _ = create_model("cloob-rn-tiny")
        save_checkpoint(tmp_path / f"ck-s{seed}" / "checkpoints", 7, model.clip.state_dict(), {"extras": {}},
                        {"model": "cloob-rn-tiny", "method": "clip", "step": 7})
    spec = f"scenes-scene:{scenes}"
    path = write_grid(tmp_path, {
        "name": "src", "out": str(tmp_path / "out"), "archive": str(tmp_path / "results"), "set": {"threads": 1},
        "sources": {"emb": {"label": "embedding", "checkpoint": str(tmp_path / "ck-s{seed}")},
                    "bb": {"label": "backbone", "checkpoint": str(tmp_path / "ck-s{seed}"),
                           "evals": [["knn", spec, "--k", "3", "--features", "backbone"],
                                     ["finetune", spec, "--features", "backbone", "--max-steps", "1", "--epochs", "1"]]}},
        "grid": {"seed": [0, 1], "source": ["emb", "bb"]},
        "evals": [["knn", spec, "--k", "3"]], "parallel": 2, "compare": {"group_by": "label"}})
    assert main(["experiment", "--grid", str(path)]) == 0
    out = capfd.readouterr().out
    assert "4/4 cells finished" in out
    knn = json.loads(next((tmp_path / "out" / "s1-bb" / "eval").glob("knn-backbone-*.json")).read_text())
    assert knn["features"] == "backbone" and knn["step"] == 7 and knn["checkpoint"].startswith(str(tmp_path / "ck-s1"))
    assert list((tmp_path / "out" / "s1-bb" / "eval").glob("finetune-linear-none-backbone-*.json"))
    assert not (tmp_path / "out" / "s0-emb" / "checkpoints").exists()  # nothing trained
    assert (tmp_path / "results" / "s0-bb" / "DONE").is_file() and (tmp_path / "results" / "s0-bb" / "config.yaml").is_file()
    cmp = (tmp_path / "out" / "compare" / "compare.md").read_text()
    assert "backbone" in cmp and "embedding" in cmp
    # finished cells are skipped on a rerun
    assert main(["experiment", "--grid", str(path)]) == 0
    assert "skip" not in out and capfd.readouterr().out.count("skip s") == 4
