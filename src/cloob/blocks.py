"""How the N×M score matrices of the losses and the Hopfield retrieval are cut into row blocks.

One bound for every kernel that streams over rows (:mod:`cloob.losses`, :mod:`cloob.hopfield`), so memory is
O(block·M) instead of O(N·M). Tests lower :data:`BLOCK_ELEMENTS` to force several blocks on small inputs.
"""
from __future__ import annotations

# Elements of one block (rows × M); 2^24 floats = 64 MiB in float32.
BLOCK_ELEMENTS = 1 << 24


def block_rows(n: int, m: int) -> int:
    """Rows per block of an (n, m) matrix: at most :data:`BLOCK_ELEMENTS` elements, at least one row, at most n."""
    return max(1, min(n, BLOCK_ELEMENTS // max(m, 1)))
