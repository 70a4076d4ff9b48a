"""`cloob data cache`: pre-decoded uint8 shards of any pairs spec, memory-mapped, validated, resumable."""
import numpy as np
import pytest
from PIL import Image

from cloob.cli import main
from cloob.data import DataError, open_pairs
from cloob.data.decoded import write_cache


@pytest.fixture
def csv(tmp_path):
    """6 pairs, one missing image (a bad sample the cache skips and counts)."""
    rows = ["filepath,title"]
    for i in range(6):
        if i != 3:
            Image.new("RGB", (48, 32), (40 * i, 100, 200)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,picture {i}")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "pairs.csv"


def test_cache_equals_the_source_resized_and_reads_back_as_pairs(csv, tmp_path):
    m = write_cache(str(csv), tmp_path / "c", 16, shard_size=2, progress=False)
    assert m["n"] == 5 and len(m["shards"]) == 3 and m["bad"] == {"missing_file": 1}
    ds = open_pairs(f"cache:{tmp_path / 'c'}", image_transform=None, tokenizer=None)
    assert len(ds) == 5 and [ds[i][1] for i in range(5)] == ["picture 0", "picture 1", "picture 2", "picture 4",
                                                             "picture 5"]
    # pixels: the source image, shorter side to 16 (bicubic), centre crop, as uint8
    src = Image.open(tmp_path / "4.png").convert("RGB").resize((24, 16), Image.BICUBIC).crop((4, 0, 20, 16))
    assert np.array_equal(np.asarray(ds[3][0]), np.asarray(src))


def test_an_interrupted_cache_resumes_and_a_damaged_one_is_refused(csv, tmp_path, monkeypatch):
    from cloob.data import decoded

    calls = {"n": 0}
    real = decoded._resize_square

    def dies_after_three(image, size):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(image, size)

    monkeypatch.setattr(decoded, "_resize_square", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        write_cache(str(csv), tmp_path / "c", 16, shard_size=2, progress=False)
    assert (tmp_path / "c" / "shard-00000.npy").is_file() and not (tmp_path / "c" / "manifest.json").exists()
    with pytest.raises(DataError, match="manifest.json missing"):
        open_pairs(f"cache:{tmp_path / 'c'}", image_transform=None, tokenizer=None)
    monkeypatch.setattr(decoded, "_resize_square", real)
    resumed = write_cache(str(csv), tmp_path / "c", 16, shard_size=2, progress=False)
    fresh = write_cache(str(csv), tmp_path / "f", 16, shard_size=2, progress=False)
    assert resumed["n"] == fresh["n"] == 5 and resumed["bad"] == fresh["bad"]
    for s in fresh["shards"]:
        assert np.array_equal(np.load(tmp_path / "c" / f"{s['name']}.npy"), np.load(tmp_path / "f" / f"{s['name']}.npy"))
    # a truncated shard: refused when opened, naming it
    shard = tmp_path / "c" / "shard-00001.npy"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DataError, match="shard-00001 is missing or incomplete"):
        open_pairs(f"cache:{tmp_path / 'c'}", image_transform=None, tokenizer=None)
    with pytest.raises(DataError, match="another --out"):
        write_cache(str(csv), tmp_path / "f", 32, progress=False)


def test_cli_writes_and_training_reads_the_cache(csv, tmp_path, capsys):
    from cloob.train import loop
    from cloob.train.config import build_config

    assert main(["data", "cache", str(csv), "--out", str(tmp_path / "c"), "--size", "32"]) == 0
    assert "5 pairs, 32 px" in capsys.readouterr().out
    cfg = build_config(None, {"train_data": f"cache:{tmp_path / 'c'}", "model": "cloob-vit-tiny", "batch_size": 2,
                              "max_steps": 2, "run_dir": str(tmp_path / "r"), "progress": False, "threads": 1})
    assert loop.train(cfg, log=lambda *_: None)["step"] == 2
