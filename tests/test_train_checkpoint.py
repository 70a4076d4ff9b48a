"""Checkpoint integrity: meta.json's manifest of sizes and sha256 digests, written last; damaged
checkpoints are skipped by ``--resume auto`` (saying why) and refused in one line when named."""
import hashlib
import json
import os
import shutil

import pytest
import torch

from cloob.data.scenes import generate_scenes
from cloob import checkpoint as ckpt
from cloob.train import loop
from cloob.train.config import build_config
from cloob.weights import CheckpointError

MODEL = "cloob-vit-tiny"


def _save(d, step, **kw):
    return ckpt.save_checkpoint(d, step, {"w": torch.arange(6.0) + step}, {"extras": {}, "n": step},
                                {"model": MODEL, "step": step}, model_config={"embed_dim": 8}, **kw)


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_meta_json_records_the_size_and_sha256_of_every_other_file(tmp_path):
    path = _save(tmp_path, 1)
    meta = json.loads((path / "meta.json").read_text())
    others = sorted(p.name for p in path.iterdir() if p.name != "meta.json")
    assert others == ["model.safetensors", "model_config.json", "state.pt"]
    assert sorted(meta["files"]) == others
    for name in others:
        data = (path / name).read_bytes()
        assert meta["files"][name] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert meta["model"] == MODEL and ckpt.checkpoint_problem(path) is None


def test_every_checkpoint_file_has_the_mode_of_a_new_file(tmp_path):
    old = os.umask(0o022)
    try:
        path = _save(tmp_path, 1)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in path.iterdir()}
    assert modes == dict.fromkeys(modes, 0o644), modes  # safetensors alone used to write 0600


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
@pytest.mark.parametrize("name", ["model.safetensors", "state.pt", "model_config.json"])
def test_a_damaged_file_is_found_by_the_manifest(tmp_path, name, damage):
    path = _save(tmp_path, 1)
    f = path / name
    if damage == "truncate":
        _truncate(f)
    elif damage == "flip":  # same size, one byte changed: only the digest sees it
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
    else:
        f.unlink()
    problem = ckpt.checkpoint_problem(path)
    assert problem is not None and problem.startswith(name), problem
    with pytest.raises(CheckpointError, match=f"step-00000001 is damaged: {name}"):
        ckpt.resolve_checkpoint(path)


def test_resolve_falls_back_to_the_newest_intact_checkpoint_and_says_why(tmp_path):
    for step in (1, 2, 3):
        _save(tmp_path, step)
    _truncate(tmp_path / "step-00000003" / "state.pt")
    (tmp_path / "step-00000002" / "meta.json").write_text('{"model": "cut off')
    warnings = []
    assert ckpt.resolve_checkpoint(tmp_path, warn=warnings.append).name == "step-00000001"
    assert len(warnings) == 2
    assert "step-00000003: state.pt has" in warnings[0] and "where meta.json records" in warnings[0]
    assert "step-00000002: meta.json is unreadable" in warnings[1]
    _truncate(tmp_path / "step-00000001" / "model.safetensors")
    with pytest.raises(CheckpointError, match="no intact checkpoint under .*step-00000003: state.pt"):
        ckpt.resolve_checkpoint(tmp_path, warn=warnings.append)


def test_a_checkpoint_without_a_manifest_is_trusted_and_a_broken_one_fails_in_one_line(tmp_path):
    path = _save(tmp_path, 1)
    meta = json.loads((path / "meta.json").read_text())
    del meta["files"]  # as written before manifests existed
    (path / "meta.json").write_text(json.dumps(meta))
    assert ckpt.checkpoint_problem(path) is None and ckpt.resolve_checkpoint(tmp_path) == path
    assert torch.equal(ckpt.load_model_state(path)["w"], torch.arange(6.0) + 1)
    _truncate(path / "model.safetensors")
    _truncate(path / "state.pt")
    for load in (ckpt.load_model_state, ckpt.load_train_state):
        with pytest.raises(CheckpointError, match=r"^cannot read .*step-00000001/(model\.safetensors|state\.pt): "):
            load(path)


# ------------------------------------------------------------------ training ----
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run with checkpoints after steps 1, 2 and 3."""
    root = tmp_path_factory.mktemp("resume")
    generate_scenes(root / "scenes", n=64, size=32, n_eval=8, workers=1)
    args = {"train_data": f"scenes:{root / 'scenes'}", "model": MODEL, "batch_size": 16, "max_steps": 3,
            "save_every": 1, "log_every": 1, "run_dir": str(root / "run"), "progress": False, "threads": 1}
    loop.train(build_config(None, args), log=lambda *_: None)
    return root / "run", args


@pytest.mark.parametrize("name", ["model.safetensors", "state.pt"])
def test_resume_auto_skips_a_truncated_latest_checkpoint_saying_why(trained, tmp_path, name):
    src, args = trained
    run = tmp_path / "run"
    shutil.copytree(src, run)
    _truncate(run / "checkpoints" / "step-00000003" / name)
    lines = []
    summary = loop.train(build_config(None, {**args, "run_dir": str(run), "max_steps": 4, "resume": "auto"}),
                         log=lines.append)
    assert summary["step"] == 4
    skipped = [ln for ln in lines if "skipping damaged checkpoint" in ln]
    assert len(skipped) == 1 and f"step-00000003: {name} has" in skipped[0], lines
    assert any(ln.startswith("resumed from") and ln.split()[2].endswith("step-00000002") for ln in lines), lines
    assert ckpt.checkpoint_problem(run / "checkpoints" / "step-00000003") is None  # step 3 written again


def test_resume_from_a_named_damaged_checkpoint_is_one_line_exit_2(trained, tmp_path, capsys):
    from cloob.cli import main

    src, args = trained
    run = tmp_path / "run"
    shutil.copytree(src, run)
    _truncate(run / "checkpoints" / "step-00000002" / "model.safetensors")
    code = main(["train", "--train-data", args["train_data"], "--model", MODEL, "--run-dir", str(run),
                 "--batch-size", "16", "--max-steps", "4", "--no-progress", "--threads", "1",
                 "--resume", str(run / "checkpoints" / "step-00000002")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: checkpoint ") and "step-00000002 is damaged: model.safetensors has" in err[0]


def test_reopening_the_log_after_a_crash_drops_a_torn_last_line_and_later_steps(tmp_path, capsys):
    # a full disk or a kill mid-write leaves half a JSON line; resume must not die on it
    import json
    from types import SimpleNamespace

    from cloob.train.logs import close_logs, open_logs

    path = tmp_path / "metrics.jsonl"
    whole = [json.dumps({"kind": "train", "step": s, "loss": 1.0}) for s in (10, 20, 30)]
    path.write_text("\n".join(whole) + "\n" + whole[0][:17])
    run = SimpleNamespace(run_dir=tmp_path, metrics_file=None, writer=None)
    open_logs(run, step=20)
    close_logs(run)
    assert [json.loads(ln)["step"] for ln in path.read_text().splitlines()] == [10, 20]
    assert "dropped 1 torn line" in capsys.readouterr().err
