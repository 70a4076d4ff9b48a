"""Bad input: each kind is skipped with its counted reason; non-RGB modes convert; strict names file and row."""
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from cloob.data import BadSample, BadSampleReport, DataError, make_loader, open_pairs, to_rgb
from cloob.data.commands import add_commands
from cloob.data.csvfile import CsvPairs
from cloob.data.wds import WdsPairs, write_wds


def _png(path, value=100, size=(6, 5)):
    Image.new("RGB", size, (value, 50, 200)).save(path)


def _scan(ds):
    report = BadSampleReport()
    for _ in make_loader(ds, 4, shuffle=False, seed=0, drop_last=False, report=report):
        pass
    return report


def _csv_with(tmp_path, rows, header="filepath,title", raw=None):
    f = tmp_path / "d.csv"
    body = header + "\n" + "".join(r + "\n" for r in rows)
    f.write_bytes(raw if raw is not None else body.encode("utf-8"))
    return f


@pytest.fixture
def good(tmp_path):
    _png(tmp_path / "good.png")
    return "good.png,a good image"


def _one_bad(tmp_path, good, bad_row, reason, prepare=None):
    if prepare:
        prepare(tmp_path)
    ds = CsvPairs(_csv_with(tmp_path, [good, bad_row, good]), image_transform=None, tokenizer=None)
    r = _scan(ds)
    assert r.counts == {reason: 1}, r.format()
    assert r.n_ok == 2
    assert "row 3" in r.examples[reason][0] and "d.csv" in r.examples[reason][0]
    return r


def test_missing_file_is_skipped_and_counted(tmp_path, good):
    _one_bad(tmp_path, good, "nope.png,missing", "missing_file")


def test_truncated_image_is_skipped_and_counted(tmp_path, good):
    def prep(d):
        b = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(b, "JPEG")
        (d / "t.jpg").write_bytes(b.getvalue()[: len(b.getvalue()) // 2])
    _one_bad(tmp_path, good, "t.jpg,truncated", "truncated_image", prep)


def test_corrupt_bytes_are_skipped_and_counted(tmp_path, good):
    _one_bad(tmp_path, good, "c.png,corrupt", "corrupt_image", lambda d: (d / "c.png").write_bytes(b"not an image" * 9))


def test_zero_size_image_is_skipped_and_counted(tmp_path, good):
    _one_bad(tmp_path, good, "z.png,zero", "zero_size_image", lambda d: (d / "z.png").write_bytes(b""))


def test_empty_caption_is_skipped_and_counted(tmp_path, good):
    _one_bad(tmp_path, good, 'good.png,"   "', "empty_caption")


def test_non_utf8_caption_is_skipped_and_counted(tmp_path, good):
    _png(tmp_path / "good.png")
    raw = b"filepath,title\n" + good.encode() + b"\ngood.png,caf\xe9 latin-1\n" + good.encode() + b"\n"
    ds = CsvPairs(_csv_with(tmp_path, [], raw=raw), image_transform=None, tokenizer=None)
    r = _scan(ds)
    assert r.counts == {"non_utf8_caption": 1} and r.n_ok == 2


def test_csv_row_with_missing_column_is_skipped_and_counted(tmp_path, good):
    _one_bad(tmp_path, good, "good.png", "missing_column")


def test_csv_row_with_an_extra_column_is_skipped_and_quoted_commas_stay_valid(tmp_path, good):
    _one_bad(tmp_path, good, "good.png,one,two", "extra_column")
    _png(tmp_path / "good.png")
    f = _csv_with(tmp_path, ['good.png,"one, two"', '"good.png","three, four, five"'])
    assert [c for _, c in CsvPairs(f, image_transform=None, tokenizer=None)] == ["one, two", "three, four, five"]


def test_damaged_csv_counts_every_skip_kind_exactly(tmp_path, good, capsys):
    """One CSV with every kind of damage a CSV can carry, read by `cloob data check`; counts by hand."""
    import argparse
    import os

    root = tmp_path / "data"
    root.mkdir()
    _png(root / "good.png")
    b = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(b, "JPEG")
    (root / "t.jpg").write_bytes(b.getvalue()[: len(b.getvalue()) // 2])
    (root / "c.png").write_bytes(b"not an image" * 9)
    (root / "z.png").write_bytes(b"")
    (root / "big.png").write_bytes(bytes(5000))  # over --max-image-bytes 4096
    _png(root / "wide.png", size=(60, 40))  # 2400 pixels, over --max-image-pixels 2000
    (root / "sub").mkdir()
    os.mkfifo(root / "fifo.png")
    rows = [good, good, "nope.png,missing", "z.png,zero", "t.jpg,truncated", "c.png,corrupt", 'good.png,"  "',
            "good.png", "good.png,one,two", "../../../etc/passwd,escape", "/etc/hostname,absolute",
            "/dev/zero,device", "sub,a directory", "fifo.png,a fifo", "big.png,too many bytes",
            "wide.png,too many pixels"]
    raw = ("filepath,title\n" + "".join(r + "\n" for r in rows)).encode() + b"good.png,caf\xe9\n"
    f = root / "d.csv"
    f.write_bytes(raw)
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="c"))
    args = parser.parse_args(["data", "check", str(f), "--max-image-bytes", "4096", "--max-image-pixels", "2000"])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    counts = {m[0]: int(m[1]) for m in __import__("re").findall(r"(?m)^  (\w+): (\d+)$", out)}
    assert counts == {"missing_file": 1, "zero_size_image": 1, "truncated_image": 1, "corrupt_image": 1,
                      "empty_caption": 1, "non_utf8_caption": 1, "missing_column": 1, "extra_column": 1,
                      "outside_root": 3, "not_regular_file": 2, "file_too_large": 1, "too_many_pixels": 1}, out
    assert "2 valid samples, 15 skipped" in out


def _bomb_png(path, side=13000):
    """A grayscale PNG of side × side black pixels, deflated row by row: ~164 KB on disk, 169 MP decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0, then the pixels
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_near_limit_decompression_bomb_is_refused_from_its_header_without_a_large_allocation(tmp_path):
    import subprocess
    import sys

    bomb = tmp_path / "bomb.png"
    _bomb_png(bomb)
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow only warns: under its own limit
        assert Image.open(bomb).size == (13000, 13000)
    assert bomb.stat().st_size < 200_000
    (tmp_path / "b.csv").write_text("filepath,title\nbomb.png,a bomb\n")
    code = f"""
import resource
from cloob.data.bad import BadSampleReport
from cloob.data.csvfile import CsvPairs
ds = CsvPairs({str(tmp_path / "b.csv")!r}, image_transform=None, tokenizer=None)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
bad = ds[0]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(bad.reason, (after - before) // 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    reason, grown_mib = out.stdout.split()
    assert reason == "too_many_pixels"
    assert int(grown_mib) < 20, f"peak RSS grew by {grown_mib} MiB while refusing the bomb"  # decoding: ~700 MiB


def test_shard_ending_mid_member_is_skipped_and_counted(tmp_path, pairs):
    spec = write_wds(pairs[:4], tmp_path / "s", per_shard=4)
    shard = tmp_path / "s" / "shard-000000.tar"
    with tarfile.open(shard) as t:
        last_png = [m for m in t.getmembers() if m.name.endswith(".png")][-1]
    data = shard.read_bytes()
    shard.write_bytes(data[: last_png.offset_data + last_png.size // 2])  # ends inside the last image
    r = _scan(WdsPairs(spec, image_transform=None, tokenizer=None))
    assert r.counts == {"truncated_shard": 1}, r.format()
    assert r.n_ok == 3


def test_wds_non_utf8_and_missing_caption_counted(tmp_path, pairs):
    import webdataset

    shard = tmp_path / "x.tar"
    b = io.BytesIO()
    pairs[0][0].save(b, "PNG")
    with webdataset.TarWriter(str(shard)) as w:
        w.write({"__key__": "a", "png": b.getvalue(), "txt": b"fine"})
        w.write({"__key__": "b", "png": b.getvalue(), "txt": b"\xff\xfe bad"})
        w.write({"__key__": "c", "png": b.getvalue()})
    r = _scan(WdsPairs(str(shard), image_transform=None, tokenizer=None))
    assert r.counts == {"non_utf8_caption": 1, "missing_column": 1} and r.n_ok == 1


def test_missing_shard_is_counted(tmp_path, pairs):
    spec = write_wds(pairs[:2], tmp_path, per_shard=2)
    r = _scan(WdsPairs(spec + "::" + str(tmp_path / "gone.tar"), image_transform=None, tokenizer=None))
    assert r.counts == {"missing_file": 1} and r.n_ok == 2


# ------------------------------------------------------------ convertible modes
def test_modes_convert_to_expected_rgb():
    l_img = Image.fromarray(np.array([[0, 128, 255]], np.uint8), "L")
    assert np.asarray(to_rgb(l_img)).tolist() == [[[0, 0, 0], [128, 128, 128], [255, 255, 255]]]

    p_img = Image.new("P", (2, 1))
    p_img.putpalette([10, 20, 30, 200, 100, 0] + [0] * 762)
    p_img.putdata([0, 1])
    assert np.asarray(to_rgb(p_img)).tolist() == [[[10, 20, 30], [200, 100, 0]]]

    rgba = Image.fromarray(np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 255, 128]]], np.uint8), "RGBA")
    out = np.asarray(to_rgb(rgba)).astype(int)
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 1].tolist() == [255, 255, 255]  # composited on white
    assert np.abs(out[0, 2] - np.array([127, 127, 255])).max() <= 1

    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))  # pure red in CMYK
    assert np.asarray(to_rgb(cmyk)).tolist() == [[[255, 0, 0]]]

    a16 = np.array([[0, 257 * 100, 65535]], np.uint16)
    i16 = Image.fromarray(a16)
    assert i16.mode.startswith("I;16")
    assert np.asarray(to_rgb(i16))[0, :, 0].tolist() == [0, 100, 255]


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG"),
                                      ("LA", "PNG")])
def test_non_rgb_files_load_as_rgb_not_skipped(tmp_path, mode, fmt):
    if mode == "I;16":
        img = Image.fromarray(np.full((4, 4), 257 * 42, np.uint16))
    else:
        img = Image.new("RGB", (4, 4), (30, 60, 90)).convert(mode)
    path = tmp_path / f"m.{fmt.lower()}"
    img.save(path, fmt)
    _csv = tmp_path / "m.csv"
    _csv.write_text(f"filepath,title\n{path.name},mode {mode}\n")
    ds = CsvPairs(_csv, image_transform=None, tokenizer=None)
    x, cap = ds[0]
    assert x.mode == "RGB" and x.size == (4, 4) and cap == f"mode {mode}"
    if mode == "I;16":
        assert np.asarray(x)[0, 0].tolist() == [42, 42, 42]


# ------------------------------------------------------------ strict, all-bad, report
def test_strict_raises_naming_file_and_row(tmp_path, good):
    f = _csv_with(tmp_path, [good, "nope.png,missing"])
    ds = CsvPairs(f, image_transform=None, tokenizer=None, strict=True)
    with pytest.raises(DataError, match=r"missing_file.*nope\.png.*row 3 of .*d\.csv"):
        _scan(ds)


def test_strict_raises_from_worker_process(tmp_path, good):
    f = _csv_with(tmp_path, [good, "good.png,"])
    ds = CsvPairs(f, image_transform=None, tokenizer=None, strict=True)
    with pytest.raises(DataError, match=r"empty_caption.*d\.csv.*row 3"):
        for _ in make_loader(ds, 2, shuffle=False, seed=0, drop_last=False, num_workers=1):
            pass


def test_all_bad_source_raises_one_clear_error_before_training(tmp_path):
    f = _csv_with(tmp_path, ["a.png,x", "b.png,y"])
    with pytest.raises(DataError, match=r"no valid sample[\s\S]*missing_file: 2"):
        open_pairs(str(f), image_transform=None, tokenizer=None)


def test_empty_csv_and_wrong_header_raise(tmp_path):
    with pytest.raises(DataError, match="no samples"):
        open_pairs(str(_csv_with(tmp_path, [])), image_transform=None, tokenizer=None)
    f = tmp_path / "h.csv"
    f.write_text("path,caption\nx.png,y\n")
    with pytest.raises(DataError, match=r"no column 'filepath'"):
        open_pairs(str(f), image_transform=None, tokenizer=None)


def test_report_merge_roundtrip_and_format():
    a, b = BadSampleReport("x"), BadSampleReport("x")
    for i in range(4):
        a.add(BadSample("missing_file", f"f{i}.png", i))
    for i in range(3):
        b.add(BadSample("missing_file", f"g{i}.png", i))
    b.add(BadSample("empty_caption", "c.csv", 7))
    a.n_ok, b.n_ok = 10, 5
    m = BadSampleReport.from_dict(a.to_dict()).merge(BadSampleReport.from_dict(b.to_dict()))
    assert m.counts == {"missing_file": 7, "empty_caption": 1} and m.n_ok == 15
    assert len(m.examples["missing_file"]) == 5
    text = m.format()
    assert "15 valid samples, 8 skipped" in text and "missing_file: 7" in text and "c.csv (row 7)" in text


def test_check_command_reports_damaged_csv(tmp_path, good, capsys):
    import argparse

    _png(tmp_path / "good.png")
    (tmp_path / "z.png").write_bytes(b"")
    f = _csv_with(tmp_path, [good, "nope.png,missing", "z.png,zero", "good.png,", "good.png", good])
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="c"))
    args = parser.parse_args(["data", "check", str(f), "--workers", "1"])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "2 valid samples, 4 skipped" in out
    for reason in ("missing_file: 1", "zero_size_image: 1", "empty_caption: 1", "missing_column: 1"):
        assert reason in out
    from cloob.cli import main

    assert main(["data", "check", str(f), "--strict"]) == 2  # DataError: cli.main's one error line
    assert "nope.png" in capsys.readouterr().err


def test_shard_ending_inside_a_member_header_keeps_complete_samples(tmp_path, pairs):
    spec = write_wds(pairs[:3], tmp_path / "h", per_shard=3)
    shard = tmp_path / "h" / "shard-000000.tar"
    with tarfile.open(shard) as t:
        third = [m for m in t.getmembers() if m.name.startswith("000000002")][0]
    shard.write_bytes(shard.read_bytes()[: third.offset + 100])  # cut inside the third sample's first header
    r = _scan(WdsPairs(spec, image_transform=None, tokenizer=None))
    assert r.n_ok == 2 and r.counts == {"truncated_shard": 1}, r.format()
