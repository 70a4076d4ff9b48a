"""Process-group helpers: rank/world size and the all-gather of embeddings.

The contrastive losses are computed over the global batch: every process
all-gathers the embeddings of all processes, keeping the autograd graph of its
own shard only (the other shards are constants for it). The gradient each
process gets for its local embeddings is then exactly the gradient of the
global loss; the training loop sums (not averages) parameter gradients over
processes to match a single process with the whole batch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a torch.distributed process group with more than one process is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_features(x: torch.Tensor) -> torch.Tensor:
    """All-gather (N_local, d) features into (N_global, d), in rank order.

    The local shard keeps its gradient; the other shards are detached. Local
    batch sizes may differ between processes (a batch that lost bad samples):
    shards are padded for the collective and trimmed afterwards. In a single
    process (or without a process group) ``x`` is returned unchanged.
    """
    if not is_distributed():
        return x
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([x.shape[0]], dtype=torch.long, device=x.device)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    longest = max(sizes)
    local = x.detach()
    if x.shape[0] < longest:
        local = torch.cat([local, local.new_zeros((longest - x.shape[0],) + tuple(x.shape[1:]))])
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local.contiguous())
    parts = [p[:n] for p, n in zip(parts, sizes)]
    parts[rank] = x
    return torch.cat(parts, dim=0)


def scale_gradient(value, factor: float):
    """``value`` unchanged in the forward pass, its gradient multiplied by ``factor``.

    Python floats and tensors without grad are returned unchanged.
    """
    if factor == 1 or not isinstance(value, torch.Tensor) or not value.requires_grad:
        return value
    return value * factor + (value - value * factor).detach()


def share_gradient(value):
    """Same value, gradient divided by the world size.

    Every process computes the full global loss, so a scalar used by all of
    them (inv_tau, beta) receives the full gradient on each process, while an
    embedding's gradient is only present on its own process. Scaling the shared
    scalars by 1/world makes *summing* gradients over processes exact for both.
    """
    if not is_distributed():
        return value
    return scale_gradient(value, 1.0 / dist.get_world_size())
