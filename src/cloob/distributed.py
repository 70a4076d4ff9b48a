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


def is_main_process() -> bool:
    return get_rank() == 0


def gather_features(x: torch.Tensor) -> torch.Tensor:
    """All-gather (N_local, d) features into (world·N_local, d), in rank order.

    The local shard keeps its gradient; the other shards are detached. In a
    single process (or without a process group) ``x`` is returned unchanged.
    All processes must pass the same shape; a mismatch raises a clear error
    instead of hanging in the collective.
    """
    if not is_distributed():
        return x
    world, rank = dist.get_world_size(), dist.get_rank()
    shape = torch.tensor(list(x.shape), dtype=torch.long, device=x.device)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)
    if any(not torch.equal(s, shape) for s in shapes):
        raise ValueError(
            "gather_features needs the same local shape on every process, got "
            + ", ".join(f"rank {r}: {tuple(s.tolist())}" for r, s in enumerate(shapes))
            + " (use drop_last batching)"
        )
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts, dim=0)
