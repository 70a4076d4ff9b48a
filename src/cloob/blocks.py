"""What every streaming kernel of the losses and the Hopfield retrieval shares: how their N×M score matrices
are cut into row blocks, and the precision they run in.

One bound for every kernel that streams over rows (:mod:`cloob.losses`, :mod:`cloob.hopfield`), so memory is
O(block·M) instead of O(N·M). Tests lower :data:`BLOCK_ELEMENTS` to force several blocks on small inputs.
"""
from __future__ import annotations

import contextlib

import torch

# Elements of one block (rows × M); 2^24 floats = 64 MiB in float32.
BLOCK_ELEMENTS = 1 << 24


def block_rows(n: int, m: int) -> int:
    """Rows per block of an (n, m) matrix: at most :data:`BLOCK_ELEMENTS` elements, at least one row, at most n."""
    return max(1, min(n, BLOCK_ELEMENTS // max(m, 1)))


_HALF = (torch.float16, torch.bfloat16)


def full_precision(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The kernels' inputs with fp16/bf16 upcast to fp32 (fp32 and fp64 unchanged; gradients flow back to the
    half-precision tensors). Their logsumexps and softmaxes lose too much in half precision, and their recomputing
    backward needs the dtypes the forward saw."""
    return tuple(t.float() if t.dtype in _HALF else t for t in tensors)


def apply_full_precision(function, *args):
    """``function.apply(*args)`` for a custom autograd ``function``, with its fp16/bf16 tensor arguments upcast
    (:func:`full_precision`) and any active autocast on their device disabled.

    Under CUDA autocast a custom forward's matmuls would run in bf16 and its softmax in fp32, while its backward
    (outside autocast) mixes the two: ``addmm`` then fails with "mat1 and mat2 must have the same dtype"
    (seen on an H200, torch 2.11, calling :func:`cloob.losses.clip_loss` inside ``torch.autocast``)."""
    args = tuple(full_precision(a)[0] if isinstance(a, torch.Tensor) else a for a in args)
    kind = next(a for a in args if isinstance(a, torch.Tensor)).device.type
    off = (torch.autocast(kind, enabled=False)
           if kind in ("cpu", "cuda", "xpu", "mps") and torch.is_autocast_enabled(kind) else contextlib.nullcontext())
    with off:
        return function.apply(*args)
