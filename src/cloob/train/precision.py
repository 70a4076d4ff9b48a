"""A run's precision, memory and speed settings, in one place (issue 26; open_clip's trainer has each).

- ``precision``: ``fp32``; ``bf16`` (autocast); ``fp16`` (autocast with a ``torch.amp.GradScaler`` whose state
  is checkpointed, CUDA only); ``pure_bf16`` (bf16 weights and activations, no autocast; the temperatures stay
  fp32). The features leave the towers as fp32 in every mode: the losses' logsumexp and the Hopfield
  retrieval's softmax always run in fp32, and so do the losses' matmuls, since bf16 logits would come in
  steps of 1/128 of their size (0.8 at a logit of 100, inv_tau's ceiling) before the logsumexp
  (docs/benchmarks.md has the measured bf16-vs-fp32 difference of a whole step).
- ``grad_checkpointing``: open_clip's ``set_grad_checkpointing`` (recompute activations in the backward pass).
- ``torch_compile``: ``none``, ``model`` (the towers' forward), ``loss`` (the method's loss) or ``step`` (both);
  a compile that fails warns in one line and the run goes on eagerly.
- ``channels_last``: NHWC convolutions for ResNet/timm image towers (faster in oneDNN and cuDNN).
- ``pin_memory``: pinned host batches and non-blocking copies (default: on with CUDA).
- ``adamw``: AdamW's implementation: ``auto`` (fused on CUDA, foreach elsewhere), ``fused``, ``foreach``,
  ``for-loop``.
"""
from __future__ import annotations

import contextlib

import torch


# parameters that stay fp32 under pure_bf16: a temperature's exp or a bias in bf16 would move in steps of 1/128
FP32_PARAMS = ("logit_scale", "logit_bias", "log_beta")


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision (None: no autocast)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def autocast(device: torch.device, precision: str):
    """``torch.autocast`` for the towers' forward pass in this precision (a no-op context without autocast)."""
    dtype = autocast_dtype(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def input_dtype(precision: str) -> torch.dtype | None:
    """The dtype images are cast to before the towers (pure bf16 weights take bf16 inputs); None: unchanged."""
    return torch.bfloat16 if precision == "pure_bf16" else None


def device_problem(precision: str, device: torch.device) -> str | None:
    """Why ``precision`` cannot run on ``device`` (one line), or None."""
    if precision == "fp16" and device.type != "cuda":
        return (f"precision fp16 needs a CUDA device (found {device.type}): its loss scaling guards fp16's "
                "narrow range on GPUs; use bf16 on this device")
    return None


def make_scaler(precision: str, device: torch.device):
    """A ``torch.amp.GradScaler`` for fp16, else None."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def to_pure_bf16(model: torch.nn.Module) -> None:
    """Cast every floating parameter and buffer to bf16 in place, except :data:`FP32_PARAMS`."""
    for name, p in model.named_parameters():
        if p.is_floating_point() and not name.endswith(FP32_PARAMS):
            p.data = p.data.to(torch.bfloat16)
    for module in model.modules():
        for key, b in module._buffers.items():
            if b is not None and b.is_floating_point():
                module._buffers[key] = b.to(torch.bfloat16)


def adamw_options(impl: str, device: torch.device) -> dict:
    """Keyword arguments of ``torch.optim.AdamW`` for ``impl`` on ``device``."""
    if impl == "auto":
        impl = "fused" if device.type == "cuda" else "foreach"
    return {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}[impl]


def pin_memory(setting: bool | None, device: torch.device) -> bool:
    """Whether batches are pinned (and copied without blocking): the setting, or on exactly when on CUDA."""
    return device.type == "cuda" if setting is None else bool(setting) and device.type == "cuda"


class Compiled:
    """``torch.compile(fn)`` that falls back to ``fn`` for good, with one warning line, when compiling or
    running the compiled version fails (an unsupported op, no C++ compiler, a backend missing)."""

    def __init__(self, fn, what: str, warn=print):
        self.eager, self.what, self.warn = fn, what, warn
        try:
            self.compiled = torch.compile(fn)
        except Exception as e:  # noqa: BLE001 - any failure to build means: run eagerly
            self._fall_back(e)

    def _fall_back(self, e: Exception) -> None:
        from cloob.errors import first_line

        self.compiled = None
        self.warn(f"warning: torch_compile {self.what}: compiling failed ({type(e).__name__}: {first_line(e)}); "
                  "running eagerly")

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - dynamo/inductor errors surface at the first call
                if not _compile_error(e):
                    raise
                self._fall_back(e)
        return self.eager(*args, **kwargs)


def _compile_error(e: Exception) -> bool:
    """Whether an exception comes from torch.compile's machinery rather than from the code it runs."""
    module = type(e).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor", "torch.fx")) or "compile" in type(e).__name__.lower()
