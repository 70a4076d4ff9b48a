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


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    """(run directory, scenes cache): a random-init cloob-rn-tiny checkpoint at step 5 (method clip, seed 0) and
    a tiny scenes cache of 32 px (16 pairs, 40 evaluation images); one per test module that asks for it."""
    import torch

    from cloob.checkpoint import save_checkpoint
    from cloob.data.scenes import generate_scenes
    from cloob.models import create_model

    root = tmp_path_factory.mktemp("clip-run")
    generate_scenes(root / "scenes", n=16, size=32, n_eval=40, workers=1)
    torch.manual_seed(0)
    model, _, _ = create_model("cloob-rn-tiny")
    run = root / "run"
    run.mkdir()
    (run / "config.yaml").write_text("method: clip\nseed: 0\nmodel: cloob-rn-tiny\n")
    save_checkpoint(run / "checkpoints", 5, model.clip.state_dict(), {"extras": {}},
                    {"model": "cloob-rn-tiny", "method": "clip", "step": 5, "config": {"seed": 0}})
    return run, root / "scenes"
