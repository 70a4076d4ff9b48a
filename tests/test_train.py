"""cloob train: config validation, schedule, distributed equivalence, kill-and-resume,
non-finite steps, signals and untrusted checkpoints. Tiny model, tiny data."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cloob.data.scenes import generate_scenes
from cloob import checkpoint as ckpt
from cloob.train.config import ConfigError, build_config
from cloob.train.schedule import lr_at
from cloob.weights import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
MODEL = "cloob-vit-tiny"  # LayerNorm only: no batch statistics, so process count cannot change the forward pass


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "cache"
    generate_scenes(out, n=192, size=32, n_eval=24, workers=1)
    return out


def base_args(scenes, run_dir, **over):
    args = {
        "train_data": f"scenes:{scenes}", "model": MODEL, "batch_size": 16, "max_steps": 6, "lr": 1e-3,
        "warmup_steps": 2, "log_every": 1, "run_dir": str(run_dir), "progress": False, "seed": 3,
        "threads": 1,
    }
    args.update(over)
    return args


def cli(args: dict, *extra, env=None, launcher=None):
    cmd = list(launcher or [sys.executable, "-m", "cloob.cli"]) + ["train"]
    for k, v in args.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            cmd.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            cmd += [flag, str(v)]
    return cmd + list(extra)


def run_cli(args, *extra, timeout=300, launcher=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cli(args, *extra, launcher=launcher), capture_output=True, text=True, timeout=timeout,
                          env=env)


def final_weights(run_dir):
    latest = ckpt.latest_checkpoint(Path(run_dir) / "checkpoints")
    return latest, load_file(latest / "model.safetensors")


# ------------------------------------------------------------------ config ----
def test_unknown_config_key_is_refused_with_a_suggestion(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("train_data: scenes:x\nbatch_sise: 32\n")
    with pytest.raises(ConfigError, match=r"unknown key 'batch_sise' \(did you mean 'batch_size'\?\)"):
        build_config(str(cfg))
    out = subprocess.run([sys.executable, "-m", "cloob.cli", "train", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert "bad.yaml: unknown key 'batch_sise'" in out.stderr


def test_wrong_types_and_values_are_refused(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train_data: scenes:x\nbatch_size: '32'\n")
    with pytest.raises(ConfigError, match="batch_size must be an integer"):
        build_config(str(cfg))
    cfg.write_text("train_data: scenes:x\nlearn_inv_tau: 1\n")
    with pytest.raises(ConfigError, match="learn_inv_tau must be true or false"):
        build_config(str(cfg))
    with pytest.raises(ConfigError, match="method must be one of"):
        build_config(None, {"train_data": "x", "method": "sigmoid-loob"})
    with pytest.raises(ConfigError, match="train_data is required"):
        build_config(None, {})


def test_paper_scale_configs_keep_the_papers_values():
    c = build_config(str(ROOT / "configs" / "cc-rn50-cloob.yaml"))
    paper = (c.inv_tau, c.learn_inv_tau, c.hopfield_beta, c.clip_warm_start, c.warmup_steps)
    assert paper == (30.0, False, 8.0, 0.0, 20000)
    c = build_config(str(ROOT / "configs" / "cc-rn50-clip.yaml"))
    assert math.isclose(c.inv_tau, 1 / 0.07, rel_tol=1e-4) and c.learn_inv_tau and c.clip_warm_start == 0.0


def test_method_defaults_and_command_line_overrides(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train_data: scenes:x\nmethod: cloob\nlr: 1\n")
    c = build_config(str(cfg))
    # the short-budget recipe (docs/recipe.md): inv_tau 10 and half the run with CLIP's loss
    assert (c.inv_tau, c.learn_inv_tau, c.hopfield_beta, c.clip_warm_start, c.lr) == (10.0, False, 14.3, 0.5, 1.0)
    c = build_config(str(cfg), {"method": "infoloob"})
    assert (c.inv_tau, c.hopfield_beta, c.clip_warm_start) == (10.0, None, 0.0)
    c = build_config(str(cfg), {"method": "infonce-hopfield", "clip_warm_start": 0.0})
    assert (c.inv_tau, c.hopfield_beta, c.clip_warm_start) == (10.0, 14.3, 0.0)
    c = build_config(str(cfg), {"hopfield_beta": 8.0, "method": "clip"})
    assert c.hopfield_beta is None and c.learn_inv_tau and math.isclose(c.inv_tau, 1 / 0.07)
    c = build_config(str(cfg), {"hopfield_beta": 8.0, "learn_hopfield_beta": True})
    assert c.hopfield_beta == 8.0 and c.learn_hopfield_beta


def test_shipped_configs_are_valid():
    root = Path(__file__).parents[1] / "configs"
    names = {p.name for p in root.glob("*.yaml")}
    assert {"scenes-clip.yaml", "scenes-cloob.yaml", "cifar10-clip.yaml", "cifar10-cloob.yaml",
            "cc-rn50-clip.yaml", "cc-rn50-cloob.yaml"} <= names
    for name in names:
        c = build_config(str(root / name))
        assert c.method in ("clip", "cloob")
    cc = build_config(str(root / "cc-rn50-cloob.yaml"))
    assert (cc.model, cc.inv_tau, cc.hopfield_beta, cc.lr, cc.weight_decay, cc.warmup_steps) == (
        "RN50", 30.0, 8.0, 1e-3, 0.1, 20000)


# ---------------------------------------------------------------- schedule ----
def test_schedule_warmup_cosine_and_restarts_by_hand():
    assert lr_at(0, 1.0, 10, warmup_steps=4) == 0.25
    assert lr_at(3, 1.0, 10, warmup_steps=4) == 1.0
    assert lr_at(4, 1.0, 10, warmup_steps=4) == 1.0  # cosine starts at the top
    assert math.isclose(lr_at(7, 1.0, 10, warmup_steps=4), 0.5)  # halfway through 6 cosine steps
    assert math.isclose(lr_at(10, 1.0, 10, warmup_steps=4), 0.0, abs_tol=1e-12)
    assert math.isclose(lr_at(2, 1.0, 100, schedule="cosine-restarts", restart_steps=4), 0.5)
    assert lr_at(4, 1.0, 100, schedule="cosine-restarts", restart_steps=4) == 1.0  # restarted
    assert lr_at(50, 0.3, 100, schedule="constant") == 0.3
    assert math.isclose(lr_at(5, 1.0, 10, min_lr=0.2), 0.6)


# ---------------------------------------------------------- end to end ----
def test_a_run_writes_metrics_tensorboard_config_versions_and_checkpoints(scenes, tmp_path):
    args = base_args(scenes, tmp_path / "run", method="cloob", val_fraction=0.1, eval_every=3, save_every=3,
                     zeroshot="scenes-scene:" + str(scenes))
    out = run_cli(args)
    assert out.returncode == 0, out.stderr
    run = tmp_path / "run"
    lines = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in lines if r["kind"] == "train"]
    evals = [r for r in lines if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    for r in train:
        assert {"loss", "inv_tau", "beta", "lr", "pairs_per_s", "log_a", "log_b"} <= set(r)
        assert r["inv_tau"] == pytest.approx(10.0) and r["beta"] == pytest.approx(14.3)
    assert [r["step"] for r in evals] == [3, 6]
    assert all("val_loss" in r and "zeroshot/scenes-scene/top1" in r for r in evals)
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "config.yaml").is_file() and json.loads((run / "versions.json").read_text())["torch"]
    names = [p.name for p in ckpt.list_checkpoints(run / "checkpoints")]
    assert "step-00000006" in names
    meta = ckpt.read_meta(run / "checkpoints" / "step-00000006")
    assert meta["method"] == "cloob" and meta["step"] == 6
    # the weights are open_clip's: open_clip reads the safetensors file directly
    import open_clip

    import cloob.models  # noqa: F401  (registers the small configs)

    clip = open_clip.create_model(MODEL)
    open_clip.load_checkpoint(clip, str(run / "checkpoints" / "step-00000006" / "model.safetensors"))


def test_keep_last_k_and_the_best(scenes, tmp_path):
    args = base_args(scenes, tmp_path / "run", max_steps=8, save_every=1, keep_last=2, val_fraction=0.1,
                     eval_every=2, lr=5e-2)
    out = run_cli(args)
    assert out.returncode == 0, out.stderr
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")]
    assert names[-2:] == ["step-00000007", "step-00000008"]
    evals = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r["kind"] == "eval"]
    best = min(evals, key=lambda r: r["val_loss"])
    assert f"step-{best['step']:08d}" in names
    assert len(names) <= 3


@pytest.mark.slow
@pytest.mark.parametrize("warm", [0.0, 0.5], ids=["cloob", "clip-warm-start"])
def test_two_gloo_processes_equal_one_process_with_the_doubled_batch(scenes, tmp_path, warm):
    # with a CLIP warm start the learned beta sits out the first steps, which DDP must tolerate
    common = dict(max_steps=4, method="cloob", learn_inv_tau=True, learn_hopfield_beta=True, save_every=4,
                  clip_warm_start=warm)
    one = run_cli(base_args(scenes, tmp_path / "one", batch_size=16, **common))
    assert one.returncode == 0, one.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "cloob.cli"]
    two = run_cli(base_args(scenes, tmp_path / "two", batch_size=8, **common), launcher=torchrun)
    assert two.returncode == 0, two.stderr
    assert "2 process(es)" in two.stdout
    rows1 = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    rows2 = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    for key in ("loss", "inv_tau", "beta", "grad_norm"):
        assert [r[key] for r in rows2] == pytest.approx([r[key] for r in rows1], rel=1e-5, abs=1e-5), key
    _, w1 = final_weights(tmp_path / "one")
    _, w2 = final_weights(tmp_path / "two")
    assert w1.keys() == w2.keys()
    # Parameters: 4 AdamW steps of lr 1e-3, so the bound is a fraction of one step, not 1e-5. Where the
    # true gradient is 0 (the key part of attention biases), Adam divides float32 rounding noise by its
    # own magnitude (+eps) and moves by up to ~lr per step in either run: those entries are left out.
    for k in w1:
        if k.endswith("attn.in_proj_bias"):  # the key part: zero true gradient, compare q and v only
            d = w1[k].numel() // 3
            w1[k], w2[k] = torch.cat([w1[k][:d], w1[k][2 * d:]]), torch.cat([w2[k][:d], w2[k][2 * d:]])
        torch.testing.assert_close(w2[k], w1[k], rtol=0, atol=2e-4, msg=k)


@pytest.mark.slow
def test_sigkill_at_an_arbitrary_step_then_resume_equals_an_uninterrupted_run(scenes, tmp_path):
    common = dict(max_steps=10, save_every=1, method="cloob", augment=True)
    ref = run_cli(base_args(scenes, tmp_path / "ref", **common))
    assert ref.returncode == 0, ref.stderr
    args = base_args(scenes, tmp_path / "killed", **common)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cli(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    ckdir = tmp_path / "killed" / "checkpoints"
    while time.time() < deadline and len(ckpt.list_checkpoints(ckdir)) < 3:
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere in a later step, possibly while a checkpoint is being written
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = ckpt.latest_checkpoint(ckdir)
    assert done is not None and int(done.name.split("-")[1]) < 10, "the run finished before it was killed"
    resumed = run_cli(args, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    last_ref, w_ref = final_weights(tmp_path / "ref")
    last_res, w_res = final_weights(tmp_path / "killed")
    assert last_ref.name == last_res.name == "step-00000010"
    for k in w_ref:
        assert torch.equal(w_ref[k], w_res[k]), k  # bitwise
    s_ref, s_res = ckpt.load_train_state(last_ref), ckpt.load_train_state(last_res)
    for a, b in zip(s_ref["optimizer"]["state"].values(), s_res["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    # metrics.jsonl has each step once
    steps = [json.loads(x)["step"] for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_finishes_the_step_saves_and_exits_128_plus_its_number_with_a_resume_line(scenes, tmp_path, sig,
                                                                                           code):
    args = base_args(scenes, tmp_path / "run", max_steps=10_000, save_every=10_000, eval_every=10_000)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cli(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr  # stopped, not finished: a scheduler must not see 0
    assert f"{signal.Signals(sig).name} received" in stdout and "--resume auto" in stdout
    assert "done:" not in stdout
    last = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert last is not None and ckpt.read_meta(last)["step"] == steps[-1]


# ------------------------------------------------------------- non-finite ----
def _nan_on(steps_to_poison):
    """A method_loss that returns NaN on the given (1-based) optimiser steps."""
    from cloob.losses import method_loss as real

    calls = {"n": 0}

    def fake(*a, **k):
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] in steps_to_poison else loss

    return fake


def test_non_finite_steps_are_skipped_and_counted(scenes, tmp_path, monkeypatch):
    from cloob.train import loop, step

    monkeypatch.setattr(step, "method_loss", _nan_on({2, 3}))
    cfg = build_config(None, base_args(scenes, tmp_path / "run", max_steps=5))
    summary = loop.train(cfg, log=lambda *_: None)
    assert summary["skipped_steps"] == 2 and summary["step"] == 5
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in rows] == [0, 1, 2, 2, 2]
    assert math.isnan(rows[1]["loss"]) and math.isfinite(rows[3]["loss"])


def test_too_many_consecutive_non_finite_steps_stop_the_run_and_keep_the_last_good_checkpoint(
        scenes, tmp_path, monkeypatch):
    from cloob.train import loop, step

    monkeypatch.setattr(step, "method_loss", _nan_on(set(range(4, 100))))
    cfg = build_config(None, base_args(scenes, tmp_path / "run", max_steps=20, save_every=2, max_skips=3))
    with pytest.raises(loop.TrainingDiverged, match="3 consecutive non-finite steps"):
        loop.train(cfg, log=lambda *_: None)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")]
    assert names[-1] == "step-00000002"  # steps 4, 5, 6 were skipped: nothing after the last good save
    _, w = final_weights(tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in w.values())


# ---------------------------------------------------------- untrusted files ----
class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_an_untrusted_pickle_is_refused(scenes, tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload()}, evil)
    with pytest.raises(CheckpointError, match="refusing to load .*evil.pt"):
        ckpt.load_model_state(evil)
    out = run_cli(base_args(scenes, tmp_path / "run", pretrained=str(evil)))
    assert out.returncode == 2
    assert "refusing to load" in out.stderr and "pwned" not in out.stdout
    # an untrusted state.pt inside a checkpoint directory is refused too
    good = tmp_path / "ck"
    ckpt.save_checkpoint(good, 1, {"w": torch.zeros(2)}, {"extras": {}}, {"model": MODEL})
    torch.save({"optimizer": Payload()}, good / "step-00000001" / "state.pt")
    with pytest.raises(CheckpointError, match="refusing to load"):
        ckpt.load_train_state(good / "step-00000001")


def test_checkpoint_writes_are_atomic(tmp_path):
    d = tmp_path / "ck"
    ckpt.save_checkpoint(d, 1, {"w": torch.ones(3)}, {"extras": {}}, {"step": 1})
    # a crash mid-write leaves a temp directory without meta.json: never picked up, removed by the next save
    (d / ".tmp-step-00000002").mkdir()
    (d / ".tmp-step-00000002" / "model.safetensors").write_bytes(b"partial")
    assert ckpt.latest_checkpoint(d).name == "step-00000001"
    ckpt.save_checkpoint(d, 3, {"w": torch.ones(3)}, {"extras": {}}, {"step": 3})
    assert not (d / ".tmp-step-00000002").exists()
    assert [p.name for p in ckpt.list_checkpoints(d)] == ["step-00000001", "step-00000003"]


def test_gradient_accumulation_equals_the_large_batch(scenes, tmp_path):
    common = dict(max_steps=3, method="cloob", learn_inv_tau=True)
    big = run_cli(base_args(scenes, tmp_path / "big", batch_size=16, **common))
    acc = run_cli(base_args(scenes, tmp_path / "acc", batch_size=8, accum_steps=2, **common))
    assert big.returncode == 0 and acc.returncode == 0, big.stderr + acc.stderr
    rows_big = [json.loads(x) for x in (tmp_path / "big" / "metrics.jsonl").read_text().splitlines()]
    rows_acc = [json.loads(x) for x in (tmp_path / "acc" / "metrics.jsonl").read_text().splitlines()]
    for key in ("loss", "inv_tau", "grad_norm"):
        assert [r[key] for r in rows_acc] == pytest.approx([r[key] for r in rows_big], rel=1e-5, abs=1e-5), key


def test_an_extra_open_clip_model_config_can_be_trained(scenes, tmp_path):
    cfg_json = tmp_path / "tiny-extra.json"
    cfg_json.write_text(json.dumps({
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
    }))
    out = run_cli(base_args(scenes, tmp_path / "run", model="tiny-extra", model_config=str(cfg_json), max_steps=2))
    assert out.returncode == 0, out.stderr
    assert ckpt.read_meta(ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints"))["model"] == "tiny-extra"
    # the checkpoint carries its architecture: a fresh process evaluates it without model_config
    ev = subprocess.run([sys.executable, "-m", "cloob.cli", "eval", "zeroshot", "--checkpoint", str(tmp_path / "run"),
                         "--dataset", f"scenes-scene:{scenes}"], capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr
    with pytest.raises(ConfigError, match="registers 'tiny-extra'; set model: tiny-extra"):
        build_config(None, {"train_data": "x", "model_config": str(cfg_json)})


# ------------------------------------------------- collapse recipes and diagnostics ----
def test_ramp_is_geometric_then_holds_the_target():
    from cloob.train.schedule import ramp

    assert ramp(0, 100, 5.0, 30.0, 0.5) == pytest.approx(5.0)
    assert ramp(25, 100, 5.0, 30.0, 0.5) == pytest.approx(5.0 * 6.0 ** 0.5)  # halfway in log space
    assert ramp(50, 100, 5.0, 30.0, 0.5) == 30.0 and ramp(99, 100, 5.0, 30.0, 0.5) == 30.0
    assert ramp(0, 100, 50.0, 14.3, 0.0) == 14.3  # no ramp: the target from the first step


def test_warmup_fraction_scales_the_warmup_with_the_run():
    from cloob.train.schedule import Schedules

    cfg = build_config(None, {"train_data": "x", "lr": 1e-3, "warmup_steps": 7, "warmup_fraction": 0.25})
    s = Schedules.from_config(cfg, total_steps=40)
    assert s.warmup_steps == 10  # the fraction replaces warmup_steps
    assert s.lr_at(0) == pytest.approx(1e-4) and s.lr_at(9) == pytest.approx(1e-3)
    assert Schedules.from_config(cfg, total_steps=400).warmup_steps == 100
    plain = build_config(None, {"train_data": "x", "warmup_steps": 7})
    assert Schedules.from_config(plain, total_steps=40).warmup_steps == 7


def test_recipe_keys_are_validated():
    with pytest.raises(ConfigError, match="cannot also be learned"):
        build_config(None, {"train_data": "x", "method": "cloob", "inv_tau_start": 5.0, "learn_inv_tau": True})
    with pytest.raises(ConfigError, match="needs a Hopfield method"):
        build_config(None, {"train_data": "x", "method": "clip", "hopfield_beta_start": 50.0})
    with pytest.raises(ConfigError, match="hopfield_beta_ramp needs hopfield_beta_start"):
        build_config(None, {"train_data": "x", "method": "cloob", "hopfield_beta_ramp": 0.5})
    with pytest.raises(ConfigError, match="warmup_fraction must be in"):
        build_config(None, {"train_data": "x", "warmup_fraction": 1.5})
    with pytest.raises(ConfigError, match="clip_warm_start must be"):
        build_config(None, {"train_data": "x", "clip_warm_start": 1.0})
    # a scheduled temperature is not learned, even for CLIP (whose default is to learn it)
    assert not build_config(None, {"train_data": "x", "method": "clip", "inv_tau_start": 5.0}).learn_inv_tau


def test_ramps_and_clip_warm_start_drive_each_step_and_every_diagnostic_is_logged(scenes, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cloob.embedding_stats import collapsed_loss
    from cloob.train import loop
    from cloob.train.schedule import lr_at, ramp

    n, steps = 16, 6
    cfg = build_config(None, base_args(scenes, tmp_path / "run", method="cloob", max_steps=steps, batch_size=n,
                                       inv_tau=20.0, inv_tau_start=5.0, inv_tau_ramp=0.5, hopfield_beta=10.0,
                                       hopfield_beta_start=40.0, hopfield_beta_ramp=0.5, clip_warm_start=0.34,
                                       warmup_fraction=0.5))
    lines = []
    loop.train(cfg, log=lines.append)
    assert any("inv_tau 5 -> 20 over 3 steps" in ln and "clip loss for the first 2 steps" in ln for ln in lines)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    for r in rows:
        i = r["step"] - 1  # the step's values are those of optimiser step i (0-based)
        assert r["inv_tau"] == pytest.approx(ramp(i, steps, 5.0, 20.0, 0.5), rel=1e-6)
        assert r["beta"] == pytest.approx(ramp(i, steps, 40.0, 10.0, 0.5), rel=1e-6)
        assert r["lr"] == pytest.approx(lr_at(i, 1e-3, steps, 3))
        clip_step = i < 2
        assert r.get("objective") == ("clip" if clip_step else None)
        objective = "infonce" if clip_step else "infoloob"
        assert r["loss_gap"] == pytest.approx(r["loss"] - collapsed_loss(objective, n, r["inv_tau"]), abs=1e-6)
        assert {"cos/x", "cos/y", "log_a", "log_b", "loss_gap_nats"} <= set(r)
        retrievals = {f"{k}/{name}" for k in ("eff_patterns", "cos") for name in ("U_x", "U_y", "V_x", "V_y")}
        assert retrievals <= set(r) if not clip_step else not retrievals & set(r)
        if not clip_step:
            assert 1.0 <= r["eff_patterns/U_x"] <= n and -1.0 <= r["cos/U_y"] <= 1.0
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"eff_patterns/V_y", "cos/U_x", "cos/x", "train/loss_gap", "train/loss_gap_nats"} <= tags
    assert [e.step for e in events.Scalars("eff_patterns/U_x")] == [3, 4, 5, 6]


def test_a_learned_inv_tau_moves_for_an_infoloob_method(scenes, tmp_path):
    from cloob.train import loop

    cfg = build_config(None, base_args(scenes, tmp_path / "run", method="cloob", inv_tau=10.0, learn_inv_tau=True,
                                       max_steps=4, lr=5e-2))
    loop.train(cfg, log=lambda *_: None)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert abs(rows[-1]["inv_tau"] - 10.0) > 0.05
    assert ckpt.read_meta(ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints"))["inv_tau"] == pytest.approx(
        rows[-1]["inv_tau"])


def test_pretrained_accepts_a_cloob_run_to_start_from_its_weights(scenes, tmp_path):
    from cloob.train import loop
    from cloob.train.run import setup

    loop.train(build_config(None, base_args(scenes, tmp_path / "clip", max_steps=2, lr=5e-2)), log=lambda *_: None)
    _, clip_weights = final_weights(tmp_path / "clip")
    run = setup(build_config(None, base_args(scenes, tmp_path / "cloob", method="cloob",
                                             pretrained=str(tmp_path / "clip"))), log=lambda *_: None)
    state = run.model.clip.state_dict()
    for k, v in clip_weights.items():
        if k != "logit_scale":  # the new method's own temperature
            assert torch.equal(state[k], v), k
    assert float(run.model.inv_tau) == pytest.approx(10.0)


def test_a_run_sitting_at_the_collapsed_loss_warns_once(scenes, tmp_path, monkeypatch):
    from cloob.embedding_stats import collapsed_loss
    from cloob.train import loop, step

    def collapsed(method, x, y, inv_tau, beta, logit_bias=None):  # every step lands exactly on the all-identical value
        return (x * 0).sum() + (y * 0).sum() + collapsed_loss("infoloob", len(x), float(inv_tau))

    monkeypatch.setattr(step, "method_loss", collapsed)
    lines = []
    cfg = build_config(None, base_args(scenes, tmp_path / "run", method="cloob", max_steps=8, collapse_warn_steps=3,
                                       clip_warm_start=0.0))
    loop.train(cfg, log=lines.append)
    warnings = [ln for ln in lines if ln.startswith("warning: the cloob loss")]
    assert len(warnings) == 1 and "for 3 steps (1–3)" in warnings[0]
    lines.clear()
    cfg = build_config(None, base_args(scenes, tmp_path / "off", method="cloob", max_steps=4, collapse_warn_steps=0))
    loop.train(cfg, log=lines.append)
    assert not [ln for ln in lines if ln.startswith("warning")]
