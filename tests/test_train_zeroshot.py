"""Zero-shot during training: ImageNet val (open_clip's key names), a published dataset by NAME:ROOT,
every ``zeroshot_every`` epochs and at the end. Tiny model, tiny fabricated data."""
import json

import numpy as np
import pytest
from PIL import Image

from cloob.data.scenes import generate_scenes
from cloob.train.config import ConfigError, build_config


def _images(folder, n, seed):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")


@pytest.mark.slow
def test_imagenet_and_published_zeroshot_follow_zeroshot_every(tmp_path):
    from cloob.train.loop import train

    generate_scenes(tmp_path / "scenes", n=64, size=32, n_eval=8, workers=1)
    for label in (0, 3, 7):  # ImageNet val in the index layout, three of the 1,000 classes
        _images(tmp_path / "imagenet" / "val" / str(label), 2, label)
    for i, name in enumerate(("AnnualCrop", "Forest")):  # torchvision's EuroSAT layout, two of its classes
        _images(tmp_path / "zs" / "eurosat" / "2750" / name, 2, 10 + i)
    cfg = build_config(None, {
        "train_data": f"scenes:{tmp_path / 'scenes'}", "model": "cloob-vit-tiny", "batch_size": 16, "epochs": 2,
        "lr": 1e-3, "log_every": 1, "val_fraction": 0.25, "run_dir": str(tmp_path / "run"), "progress": False, "threads": 1,
        "imagenet_val": str(tmp_path / "imagenet" / "val"), "zeroshot": [f"eurosat:{tmp_path / 'zs'}"],
        "zeroshot_every": 2})
    train(cfg, log=lambda *_: None)
    evals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "eval"]
    keys = ("imagenet-zeroshot-val-top1", "imagenet-zeroshot-val-top5", "zeroshot/eurosat/top1")
    # the end of epoch 1 evaluates the validation loss only; epoch 2 (the end) adds zero-shot, under open_clip's names
    assert len(evals) == 2 and "val_loss" in evals[0] and evals[0]["epoch"] == 1
    assert not any(k in evals[0] for k in keys)
    assert all(0 <= evals[1][k] <= 1 for k in keys)


def test_zeroshot_keys_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="zeroshot_every must be >= 0"):
        build_config(None, {"train_data": "scenes:x", "zeroshot_every": -1})
