"""The one way cloob derives a seed from several integers (base seed, epoch, rank, step, sample index)."""
from __future__ import annotations

_PRIME = 1_000_003
_MOD = 2**63 - 1  # torch.manual_seed takes any int below 2**64; 63 bits keep it a positive int64 too


def mix_seed(*parts: int) -> int:
    """A seed in [0, 2**63 − 1) from ``parts``, in order: a polynomial hash with a large prime, so tuples that
    differ in one part (neighbouring steps, ranks or samples) seed unrelated streams. Deterministic across
    processes and Python runs (unlike ``hash`` of a tuple holding a str)."""
    h = 0
    for p in parts:
        h = (h * _PRIME + int(p)) % _MOD
    return h
