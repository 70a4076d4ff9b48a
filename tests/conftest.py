import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def pairs():
    """Six small distinct RGB images (varying sizes) with captions."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(6):
        a = rng.integers(0, 256, (8 + i, 10 + 2 * i, 3), dtype=np.uint8)
        out.append((Image.fromarray(a, "RGB"), f"caption number {i}, with a comma"))
    return out
