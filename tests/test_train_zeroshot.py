"""Zero-shot during training: ImageNet val and V2 (open_clip's key names), a published dataset by NAME:ROOT,
every ``zeroshot_every`` epochs and at the end. Tiny model, tiny fabricated data (ImageNet's 1,000 × 80
prompts are not encoded here: too slow for the suite; its sets are checked as built)."""
import json

import numpy as np
import pytest
from PIL import Image

from cloob.data.bad import DataError
from cloob.data.scenes import generate_scenes
from cloob.train.config import ConfigError, build_config


def _images(folder, n, seed):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")


def test_imagenet_sets_use_open_clips_names_and_the_folder_labels(tmp_path):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    from cloob.train.run import _zeroshot_sets

    for label in (0, 3, 7):  # ImageNet val in the index layout, three of the 1,000 classes
        _images(tmp_path / "imagenet" / "val" / str(label), 2, label)
    for label in (1, 2):  # ImageNetV2, its one variant folder
        _images(tmp_path / "v2" / "imagenetv2-matched-frequency-format-val" / str(label), 1, label)
    cfg = build_config(None, {"train_data": "scenes:x", "imagenet_val": str(tmp_path / "imagenet" / "val"),
                              "imagenet_v2": str(tmp_path / "v2")})
    (k1, k5, ds, names, templates), (v1, v5, v2, _, _) = _zeroshot_sets(cfg, None)
    assert (k1, k5, v1, v5) == ("imagenet-zeroshot-val-top1", "imagenet-zeroshot-val-top5",
                                "imagenetv2-zeroshot-val-top1", "imagenetv2-zeroshot-val-top5")
    assert names == list(IMAGENET_CLASSNAMES) and len(templates) == 80
    assert sorted(ds[i][1] for i in range(len(ds))) == [0, 0, 3, 3, 7, 7]
    assert sorted(v2[i][1] for i in range(len(v2))) == [1, 2]
    cfg = build_config(None, {"train_data": "scenes:x", "imagenet_val": str(tmp_path / "nowhere")})
    with pytest.raises(DataError, match="imagenet: no class folders at .*nowhere"):
        _zeroshot_sets(cfg, None)


@pytest.mark.slow
def test_published_zeroshot_follows_zeroshot_every(tmp_path):
    from cloob.train.loop import train

    generate_scenes(tmp_path / "scenes", n=64, size=32, n_eval=8, workers=1)
    for i, name in enumerate(("AnnualCrop", "Forest")):  # torchvision's EuroSAT layout, two of its classes
        _images(tmp_path / "zs" / "eurosat" / "2750" / name, 2, 10 + i)
    cfg = build_config(None, {
        "train_data": f"scenes:{tmp_path / 'scenes'}", "model": "cloob-vit-tiny", "batch_size": 16, "epochs": 2,
        "lr": 1e-3, "log_every": 1, "val_fraction": 0.25, "run_dir": str(tmp_path / "run"), "progress": False,
        "threads": 1, "zeroshot": [f"eurosat:{tmp_path / 'zs'}"], "zeroshot_every": 2})
    train(cfg, log=lambda *_: None)
    evals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "eval"]
    keys = ("zeroshot/eurosat/top1", "zeroshot/eurosat/top5")
    # the end of epoch 1 evaluates the validation loss only; epoch 2 (the end) adds zero-shot
    assert len(evals) == 2 and "val_loss" in evals[0] and evals[0]["epoch"] == 1
    assert not any(k in evals[0] for k in keys)
    assert all(0 <= evals[1][k] <= 1 for k in keys)


def test_zeroshot_keys_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="zeroshot_every must be >= 0"):
        build_config(None, {"train_data": "scenes:x", "zeroshot_every": -1})
