"""Training on streaming (webdataset) data whose pass is shorter than steps_per_epoch."""
import numpy as np
import pytest
from PIL import Image

from cloob.data import DataError
from cloob.data.wds import write_wds
from cloob.train import loop
from cloob.train.config import build_config


def _shards(out, n):
    rng = np.random.default_rng(0)
    pairs = [(Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)), f"picture number {i}")
             for i in range(n)]
    return "wds:" + write_wds(pairs, out, per_shard=n)


def _args(spec, run_dir, **over):
    args = {"train_data": spec, "model": "cloob-vit-tiny", "batch_size": 4, "steps_per_epoch": 5, "max_steps": 3,
            "run_dir": str(run_dir), "progress": False, "threads": 1, "log_every": 1, "save_every": 100}
    return {**args, **over}


def test_a_pass_shorter_than_steps_per_epoch_is_announced(tmp_path):
    lines = []
    summary = loop.train(build_config(None, _args(_shards(tmp_path / "s", 8), tmp_path / "run")), log=lines.append)
    assert summary["step"] == 3 and summary["epoch"] == 1  # 8 pairs = 2 steps of 4: epoch 0 ends after step 2
    short = [ln for ln in lines if "the data ran out" in ln]
    assert short == ["epoch 0: the data ran out after 2 of 5 steps_per_epoch; the next epoch starts now"]


@pytest.mark.timeout(120)  # it used to loop for ever
def test_a_pass_without_a_single_step_stops_instead_of_looping(tmp_path):
    with pytest.raises(DataError, match="a whole pass gave no step of 1×4 samples"):
        loop.train(build_config(None, _args(_shards(tmp_path / "s", 3), tmp_path / "run")), log=lambda *_: None)
