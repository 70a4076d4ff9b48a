"""Flickr8k: extraction of the shared archive to a cache, and its CSVs read as pairs and retrieval sets."""
import io
import tarfile

import pytest
from PIL import Image

from cloob.cli import main
from cloob.data import DataError, open_pairs, open_retrieval, shared_dir
from cloob.data.flickr8k import extract_flickr8k


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (seed * 40 % 256, 90, 200)).save(buf, "JPEG")
    return buf.getvalue()


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def fake_archive(path, extra=None):
    """The shared archive's layout in miniature: 2 photos per split, 2 captions each (one with a comma)."""
    with tarfile.open(path, "w") as tar:
        k = 0
        for split in ("train", "val", "test"):
            rows = ["filepath,title"]
            for i in range(2):
                k += 1
                _add(tar, f"flickr8k/images/{split}{i}.jpg", _jpeg(k))
                rows += [f"images/{split}{i}.jpg,A dog runs .", f'images/{split}{i}.jpg,"A dog, wet, runs ."']
            _add(tar, f"flickr8k/{split}.csv", ("\n".join(rows) + "\n").encode())
        for name, data in (extra or {}).items():
            _add(tar, name, data)
    return path


def test_extract_then_read_the_splits(tmp_path):
    tar = fake_archive(tmp_path / "f.tar")
    folder = extract_flickr8k(tmp_path / "cache", tar, log=lambda *_: None)
    pairs = open_pairs(str(folder / "train.csv"), image_transform=None, tokenizer=None)
    assert len(pairs) == 4 and pairs[1][1] == "A dog, wet, runs ."
    test = open_retrieval(str(folder / "test.csv"), image_transform=None)
    assert len(test) == 2 and test.captions[0] == ["A dog runs .", "A dog, wet, runs ."]
    # a second call reuses the extraction (nothing is written again)
    (folder / "images" / "test0.jpg").touch()
    mtime = (folder / "images" / "test0.jpg").stat().st_mtime_ns
    lines = []
    assert extract_flickr8k(tmp_path / "cache", tar, log=lines.append) == folder and not lines
    assert (folder / "images" / "test0.jpg").stat().st_mtime_ns == mtime


def test_missing_archive_wrong_layout_and_escaping_members_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        extract_flickr8k(tmp_path / "c", tmp_path / "nope.tar")
    with tarfile.open(tmp_path / "other.tar", "w") as tar:
        _add(tar, "something/else.csv", b"x")
    with pytest.raises(DataError, match="not the Flickr8k archive"):
        extract_flickr8k(tmp_path / "c", tmp_path / "other.tar")
    bad = fake_archive(tmp_path / "bad.tar", extra={"../escape.txt": b"x"})
    with pytest.raises(DataError, match="cannot extract"):
        extract_flickr8k(tmp_path / "c2", bad, log=lambda *_: None)
    assert not (tmp_path / "escape.txt").exists()


def test_cli_prints_the_specs(tmp_path, capsys):
    tar = fake_archive(tmp_path / "f.tar")
    assert main(["data", "flickr8k", "--out", str(tmp_path / "c"), "--tar", str(tar)]) == 0
    assert str(tmp_path / "c" / "flickr8k" / "train.csv") in capsys.readouterr().out


@pytest.mark.skipif(not (shared_dir() / "data" / "flickr8k" / "flickr8k.tar").is_file(), reason="no shared Flickr8k")
def test_the_shared_archive_has_the_documented_splits(tmp_path):
    folder = extract_flickr8k(tmp_path, log=lambda *_: None)
    counts = {}
    for split in ("train", "val", "test"):
        ds = open_retrieval(str(folder / f"{split}.csv"), image_transform=None)
        counts[split] = (len(ds), sum(len(c) for c in ds.captions))
        assert ds.report.n_bad == 0
    # shared/data/README.md: photos and captions per split, split by photo
    assert counts == {"train": (5591, 27955), "val": (500, 2500), "test": (1000, 5000)}
    photos = {s: set(open_retrieval(str(folder / f"{s}.csv"), image_transform=None).paths) for s in counts}
    assert not (photos["train"] & photos["test"]) and not (photos["val"] & photos["test"])


def test_flickr8k_specs_extract_on_first_use_and_read_each_split(tmp_path, monkeypatch):
    from cloob.data import spec_kind, spec_slug

    shared = tmp_path / "shared"
    (shared / "data" / "flickr8k").mkdir(parents=True)
    fake_archive(shared / "data" / "flickr8k" / "flickr8k.tar")
    monkeypatch.setenv("CLOOB_SHARED", str(shared))
    cache = tmp_path / "cache"
    pairs = open_pairs(f"flickr8k:{cache}", image_transform=None, tokenizer=None)
    assert len(pairs) == 4 and (cache / "flickr8k" / "images" / "train0.jpg").is_file()
    val = open_retrieval(f"flickr8k-val:{cache}", image_transform=None)
    test = open_retrieval(f"flickr8k-test:{cache}", image_transform=None)
    assert [p.rsplit("/", 1)[-1] for p in val.paths] == ["val0.jpg", "val1.jpg"]
    assert [p.rsplit("/", 1)[-1] for p in test.paths] == ["test0.jpg", "test1.jpg"]
    assert (spec_kind("flickr8k:"), spec_kind("flickr8k-test:")) == ("pairs", "retrieval")
    assert spec_slug("flickr8k-test:") == "flickr8k-test"
    monkeypatch.setenv("CLOOB_CACHE", str(tmp_path / "default"))
    assert len(open_retrieval("flickr8k-test:", image_transform=None)) == 2  # the default cache
    assert (tmp_path / "default" / "flickr8k" / "flickr8k" / "test.csv").is_file()
