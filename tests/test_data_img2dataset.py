"""CC3M/YFCC as img2dataset writes them (webdataset tars of .jpg/.txt/.json), train_num_samples and resampled
shards (open_clip's --train-num-samples, --dataset-resampled), on a fabricated miniature in that layout."""
import io
import itertools
import json
import tarfile

import pytest
from PIL import Image

from cloob.data.wds import WdsPairs
from cloob.train.config import ConfigError, build_config


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def img2dataset(tmp_path_factory):
    """img2dataset's output folder: NNNNN.tar shards with 9-digit keys (jpg, txt, json), and beside each its
    .parquet and _stats.json (which the reader never opens)."""
    out = tmp_path_factory.mktemp("cc3m")
    k = 0
    for shard in range(2):
        with tarfile.open(out / f"{shard:05d}.tar", "w") as tar:
            for _ in range(20):
                key = f"{k:09d}"
                buf = io.BytesIO()
                Image.new("RGB", (40, 30), (k * 11 % 256, 100, 50)).save(buf, "JPEG")
                _add(tar, f"{key}.jpg", buf.getvalue())
                _add(tar, f"{key}.txt", f"a photo number {k}".encode())
                _add(tar, f"{key}.json", json.dumps({"url": f"http://x/{k}.jpg", "key": key, "status": "success",
                                                     "width": 40, "height": 30}).encode())
                k += 1
        (out / f"{shard:05d}.parquet").write_bytes(b"PAR1")
        (out / f"{shard:05d}_stats.json").write_text(json.dumps({"count": 20, "successes": 20}))
    return out


def test_trains_on_the_img2dataset_layout_with_train_num_samples(img2dataset, tmp_path):
    from cloob.train import loop

    cfg = build_config(None, {"train_data": f"wds:{img2dataset}/{{00000..00001}}.tar", "model": "cloob-vit-tiny",
                              "batch_size": 8, "train_num_samples": 32, "epochs": 2, "run_dir": str(tmp_path / "r"),
                              "progress": False, "threads": 1, "log_every": 1, "dataset_resampled": True})
    lines = []
    summary = loop.train(cfg, log=lines.append)
    # 32 samples per epoch at a global batch of 8: 4 steps an epoch, 2 epochs
    assert "4 steps/epoch · 8 steps" in lines[0] and summary["step"] == 8 and summary["bad_samples"] == 0


def test_resampled_shards_are_drawn_with_replacement_per_rank_deterministically(img2dataset):
    ds = WdsPairs(f"{img2dataset}/{{00000..00001}}.tar", image_transform=None, tokenizer=None, resampled=True)
    draw = lambda **k: list(itertools.islice(ds.configure(shuffle=True, **k).my_shards(), 40))  # noqa: E731
    a, b = draw(rank=0, seed=1, epoch=0), draw(rank=0, seed=1, epoch=0)
    assert a == b and set(a) == set(ds.urls) and len(a) == 40  # endless, with replacement, reproducible
    assert draw(rank=1, seed=1, epoch=0) != a and draw(rank=0, seed=1, epoch=1) != a
    plain = WdsPairs(f"{img2dataset}/{{00000..00001}}.tar", image_transform=None, tokenizer=None)
    assert sorted(plain.configure(rank=0, world_size=1).my_shards()) == sorted(ds.urls)  # each shard once


def test_streaming_keys_are_refused_for_map_style_data(tmp_path):
    with pytest.raises(ConfigError, match="not both"):
        build_config(None, {"train_data": "x", "train_num_samples": 10, "steps_per_epoch": 2})
    from cloob.train.run import _micro_batches_per_epoch

    with pytest.raises(ConfigError, match="for webdataset shards"):
        _micro_batches_per_epoch(list(range(10)), build_config(None, {"train_data": "x.csv",
                                                                       "dataset_resampled": True}), 1)
