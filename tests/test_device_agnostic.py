"""No tensor of the model's computation is made on a fixed device (issue 26), checked on the CPU two ways.

1. At run time, with PyTorch's default-device context manager: ``with torch.device("meta"):`` makes every
   factory call that names no device (``torch.zeros(n)``, ``torch.tensor(x)``, ``torch.arange(n)``) create a
   *meta* tensor. The train step, the validation loss, the zero-shot hook and the towers' forward run inside
   it while the model and the batches stay real CPU tensors; a tensor that should have followed its inputs'
   device meets them as meta and the op fails. Checkpoint, resume and evaluation run around them as usual.
   On a GPU the same mistake would put a tensor on the CPU beside CUDA ones.
2. In the source: no factory call and no ``.to(...)`` names a device by a literal string.
"""
import ast
import functools
from pathlib import Path

import pytest
import torch

from cloob.data.scenes import generate_scenes
from cloob.train.config import build_config

SRC = Path(__file__).resolve().parents[1] / "src" / "cloob"
FACTORIES = {"zeros", "ones", "empty", "full", "arange", "tensor", "as_tensor", "rand", "randn", "randint",
             "randperm", "eye", "linspace", "zeros_like", "ones_like", "empty_like", "full_like"}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "cache"
    generate_scenes(out, n=96, size=32, n_eval=32, workers=1)
    return out


def _on_meta(fn):
    @functools.wraps(fn)
    def wrapped(*a, **k):
        with torch.device("meta"):  # factory calls without a device now make meta tensors
            return fn(*a, **k)
    return wrapped


def _patch_compute_on_meta(monkeypatch):
    from cloob import models
    from cloob.train import evaluate, loop, step

    monkeypatch.setattr(loop, "train_step", _on_meta(step.train_step))
    monkeypatch.setattr(evaluate, "method_loss", _on_meta(evaluate.method_loss))
    for name in ("encode_image", "encode_text"):
        monkeypatch.setattr(models.ContrastiveModel, name, _on_meta(getattr(models.ContrastiveModel, name)))


@pytest.mark.parametrize("method", ["clip", "cloob", "siglip-hopfield"])
def test_train_step_checkpoint_resume_and_eval_create_no_tensor_on_a_fixed_device(scenes, tmp_path, monkeypatch,
                                                                                 method):
    from cloob.train import loop

    _patch_compute_on_meta(monkeypatch)
    args = {"train_data": f"scenes:{scenes}", "model": "cloob-vit-tiny", "batch_size": 16, "max_steps": 2,
            "run_dir": str(tmp_path / "r"), "progress": False, "threads": 1, "method": method, "val_fraction": 0.2,
            "eval_every": 1, "zeroshot": [f"scenes-scene:{scenes}"], "clip_warm_start": 0.5, "accum_steps": 1}
    first = loop.train(build_config(None, args), log=lambda *_: None)
    assert first["step"] == 2 and set(first["metrics"]) == {"val_loss", "zeroshot/scenes-scene/top1"}
    resumed = loop.train(build_config(None, {**args, "max_steps": 3, "resume": "auto"}), log=lambda *_: None)
    assert resumed["step"] == 3


def test_the_check_catches_a_tensor_made_without_its_inputs_device(monkeypatch):
    """The run-time check fails on exactly the mistake it is for (a planted factory call without a device)."""
    from cloob import loss_kernels

    real = loss_kernels.as_scalar
    monkeypatch.setattr(loss_kernels, "as_scalar",
                        lambda v, like: torch.tensor(float(v), dtype=like.dtype) if not isinstance(v, torch.Tensor)
                        else real(v, like))
    x = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    from cloob.losses import clip_loss

    clip_loss(x, x, 10.0)  # fine on the CPU: the planted tensor lands on the default device, the CPU
    with pytest.raises((RuntimeError, NotImplementedError)):
        _on_meta(clip_loss)(x, x, 10.0)


def _literal_device(node: ast.Call) -> str | None:
    for kw in node.keywords:
        if kw.arg == "device" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return kw.value.value
    return None


def literal_device_calls(source: str) -> list[tuple[int, str, str]]:
    """(line, call, device) of every factory call or ``.to``/``.cuda`` that names a device by a literal string."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name = node.func.attr
        literal = _literal_device(node) if name in FACTORIES else None
        if name == "cuda":
            literal = "cuda"
        elif name == "to":
            literal = next((a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)),
                           _literal_device(node))
        if literal in ("cpu", "cuda") or (literal or "").startswith("cuda:"):
            found.append((node.lineno, name, literal))
    return found


def test_the_source_scan_finds_literal_devices():
    code = ("a = torch.zeros(3, device='cuda')\nb = x.to('cpu')\nc = y.cuda()\nd = torch.ones(2, device=x.device)\n"
            "e = x.to(x.device)\nf = torch.arange(4, device='cuda:1')\n")
    assert [(ln, c) for ln, c, _ in literal_device_calls(code)] == [(1, "zeros"), (2, "to"), (3, "cuda"), (6, "arange")]


def test_no_source_line_puts_a_tensor_on_a_literal_device():
    # host-side tensors (data, checkpoints on disk) are made on the CPU deliberately, through map_location or
    # without a device; a model-side one must follow its inputs
    found = [f"{path.relative_to(SRC)}:{line} {call}(... {dev!r})" for path in sorted(SRC.rglob("*.py"))
             for line, call, dev in literal_device_calls(path.read_text(encoding="utf-8"))]
    assert not found, "tensors on a literal device:\n" + "\n".join(found)
