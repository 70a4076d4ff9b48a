"""Precision and memory keys of `cloob train` (issue 26): each key changes what it says and nothing else."""
import shutil

import pytest
import torch

from cloob.data import make_loader
from cloob.data.scenes import generate_scenes
from cloob.train import precision as P
from cloob.train.config import ConfigError, build_config

MODEL = "cloob-vit-tiny"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "cache"
    generate_scenes(out, n=64, size=32, n_eval=16, workers=1)
    return out


def _cfg(scenes, run_dir, **over):
    args = {"train_data": f"scenes:{scenes}", "model": MODEL, "batch_size": 16, "max_steps": 4, "lr": 1e-3,
            "log_every": 1, "run_dir": str(run_dir), "progress": False, "seed": 3, "threads": 1,
            "method": "cloob", "clip_warm_start": 0.0}
    args.update(over)
    return build_config(None, args)


def _first_step_loss_and_grads(scenes, tmp_path, **over):
    from cloob.train.run import setup
    from cloob.train.step import train_step

    torch.manual_seed(0)
    run = setup(_cfg(scenes, tmp_path / "r", **over), log=lambda *_: None)
    batch = next(iter(make_loader(run.dataset, 16, shuffle=False, seed=0)))
    run.optimizer.step = lambda *a, **k: None  # keep the gradients of the first step, take no update
    run.optimizer.zero_grad = lambda *a, **k: None
    out = train_step(run, [batch])
    grads = {n: p.grad.float().clone() for n, p in run.model.named_parameters() if p.grad is not None}
    return out["loss"], grads, run


def test_fp16_is_refused_on_cpu_in_one_line(scenes, tmp_path, capsys):
    from cloob.cli import main

    code = main(["train", "--train-data", f"scenes:{scenes}", "--model", MODEL, "--precision", "fp16",
                 "--run-dir", str(tmp_path / "r"), "--max-steps", "1", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "fp16 needs a CUDA device" in err[0] and "bf16" in err[0]
    with pytest.raises(ConfigError, match="precision must be one of"):
        build_config(None, {"train_data": "x", "precision": "fp8"})


def test_fp16_scaler_state_round_trips_through_resume_bitwise(scenes, tmp_path, monkeypatch):
    """Emulated on the CPU (fp16 autocast and torch.amp.GradScaler run here; only cloob's policy refuses
    them): 2 steps + resume + 2 steps equal 4 uninterrupted steps, scaler state included, bitwise."""
    from safetensors.torch import load_file

    from cloob.checkpoint import latest_checkpoint, load_train_state
    from cloob.train import loop, run as run_module

    monkeypatch.setattr(run_module, "device_problem", lambda *a: None)
    # a scale that changes at every step (grows after each good step), so a resume that lost it shows
    monkeypatch.setattr(run_module, "make_scaler",
                        lambda precision, device: torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1))
    whole = _cfg(scenes, tmp_path / "whole", precision="fp16", max_steps=4, save_every=2)
    loop.train(whole, log=lambda *_: None)
    # the same run cut after step 2: its step-2 checkpoint alone, then resumed to step 4
    shutil.copytree(tmp_path / "whole", tmp_path / "cut")
    shutil.rmtree(latest_checkpoint(tmp_path / "cut" / "checkpoints"))
    assert latest_checkpoint(tmp_path / "cut" / "checkpoints").name == "step-00000002"
    resumed = _cfg(scenes, tmp_path / "cut", precision="fp16", max_steps=4, save_every=2, resume="auto")
    loop.train(resumed, log=lambda *_: None)
    a, b = latest_checkpoint(tmp_path / "whole" / "checkpoints"), latest_checkpoint(tmp_path / "cut" / "checkpoints")
    assert a.name == b.name == "step-00000004"
    sa, sb = load_train_state(a)["scaler"], load_train_state(b)["scaler"]
    assert sa is not None and sa == sb and sa["scale"] != 2.0**10  # it moved, and the resumed run agrees
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bf16_and_pure_bf16_losses_agree_with_fp32_within_the_written_tolerance(scenes, tmp_path):
    """The written tolerance (docs/benchmarks.md, precision): the first step's bf16 loss within 1e-3 relative
    of fp32's (bench_precision measured at most 6e-4 over CLIP, CLOOB and SigLIP on both tiny models) and the
    gradient within 5 % in norm here (measured 1-5.4 % there; 5 % holds for this model and batch)."""
    ref_loss, ref_grads, _ = _first_step_loss_and_grads(scenes, tmp_path / "fp32")
    for mode in ("bf16", "pure_bf16"):
        loss, grads, run = _first_step_loss_and_grads(scenes, tmp_path / mode, precision=mode)
        assert abs(loss - ref_loss) <= 1e-3 * abs(ref_loss), mode
        num = sum((grads[k] - ref_grads[k]).pow(2).sum() for k in ref_grads).sqrt()
        den = sum(g.pow(2).sum() for g in ref_grads.values()).sqrt()
        assert float(num / den) < 0.05, mode
    # pure bf16 keeps the temperatures in fp32 and everything else in bf16
    dtypes = {n: p.dtype for n, p in run.model.named_parameters()}
    assert dtypes["clip.logit_scale"] == torch.float32
    assert all(d == torch.bfloat16 for n, d in dtypes.items() if not n.endswith(P.FP32_PARAMS))


def test_grad_checkpointing_gives_the_same_gradients(scenes, tmp_path):
    loss, grads, _ = _first_step_loss_and_grads(scenes, tmp_path / "plain")
    loss_c, grads_c, run = _first_step_loss_and_grads(scenes, tmp_path / "ckpt", grad_checkpointing=True)
    assert run.model.clip.transformer.grad_checkpointing  # the key reached open_clip
    assert loss_c == pytest.approx(loss, abs=1e-6)
    for k in grads:
        torch.testing.assert_close(grads_c[k], grads[k], rtol=1e-5, atol=1e-5)


def test_channels_last_key_sets_the_image_towers_memory_format(scenes, tmp_path):
    from cloob.train.run import setup

    formats = {}
    for flag in (True, False):
        run = setup(_cfg(scenes, tmp_path / str(flag), model="cloob-rn-tiny", channels_last=flag), log=lambda *_: None)
        w = run.model.clip.visual.conv1.weight
        formats[flag] = w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    assert formats == {True: True, False: False}


def test_adamw_implementation_and_pinned_memory_follow_the_device(scenes, tmp_path):
    from cloob.train.run import setup

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert P.adamw_options("auto", cpu) == {"foreach": True} and P.adamw_options("auto", cuda) == {"fused": True}
    assert P.adamw_options("for-loop", cpu) == {"foreach": False}
    assert (P.pin_memory(None, cpu), P.pin_memory(None, cuda), P.pin_memory(False, cuda)) == (False, True, False)
    run = setup(_cfg(scenes, tmp_path / "r", adamw="for-loop"), log=lambda *_: None)
    assert run.optimizer.defaults["foreach"] is False and run.pin_memory is False
    with pytest.raises(ConfigError, match="adamw must be one of"):
        build_config(None, {"train_data": "x", "adamw": "lion"})


def test_a_failed_compile_warns_in_one_line_and_trains_eagerly(scenes, tmp_path, monkeypatch):
    from cloob.train import loop

    def broken(fn, *a, **k):
        def call(*args, **kwargs):
            raise torch._dynamo.exc.InternalTorchDynamoError("no C++ compiler")
        return call

    import torch._dynamo  # noqa: F401 - the exception type compile failures raise

    monkeypatch.setattr(torch, "compile", broken)
    lines = []
    summary = loop.train(_cfg(scenes, tmp_path / "r", torch_compile="step", max_steps=2), log=lines.append)
    warnings = [ln for ln in lines if ln.startswith("warning: torch_compile")]
    assert summary["step"] == 2 and len(warnings) == 2  # one line for the towers, one for the loss
    assert all("running eagerly" in w and "\n" not in w for w in warnings)
