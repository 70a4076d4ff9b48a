"""What the datasets agree to read: paths under the data root, regular files, tar members without
absolute names, ``..`` or links. Every refusal is a counted skip (cloob.data.policy)."""
import io
import os
import tarfile

import pytest
from PIL import Image

from cloob.data import BadSampleReport, DataError, ReadPolicy, make_loader, open_labelled
from cloob.data.csvfile import CsvPairs
from cloob.data.folder import ImageFolder, TarFolder
from cloob.data.policy import resolve_under
from cloob.data.wds import WdsPairs


def _png_bytes(value=100) -> bytes:
    b = io.BytesIO()
    Image.new("RGB", (6, 5), (value, 50, 200)).save(b, "PNG")
    return b.getvalue()


def _scan(ds) -> BadSampleReport:
    report = BadSampleReport()
    if getattr(ds, "report", None) is not None:
        report.merge(ds.report)
    for _ in make_loader(ds, 4, shuffle=False, seed=0, drop_last=False, report=report):
        pass
    return report


def _captions(ds) -> list[str]:
    return [s[1] for s in (ds[i] for i in range(len(ds))) if isinstance(s, tuple)]


@pytest.fixture
def tree(tmp_path):
    """tmp/root/{csv/d.csv, img/a.png}, tmp/outside.png."""
    (tmp_path / "root" / "csv").mkdir(parents=True)
    (tmp_path / "root" / "img").mkdir()
    (tmp_path / "root" / "img" / "a.png").write_bytes(_png_bytes())
    (tmp_path / "outside.png").write_bytes(_png_bytes(7))
    return tmp_path


def _csv(path, rows):
    path.write_text("filepath,title\n" + "".join(r + "\n" for r in rows))
    return path


def test_resolve_under_is_lexical_containment():
    assert resolve_under("a/b.png", "/data") == ("/data/a/b.png", None)
    assert resolve_under("a/../b.png", "/data") == ("/data/b.png", None)
    assert resolve_under("/data/x/y.png", "/data") == ("/data/x/y.png", None)
    for escaping in ("../b.png", "a/../../b.png", "/etc/passwd", "/database/x.png"):
        path, problem = resolve_under(escaping, "/data")
        assert problem is not None and "outside the data root /data" in problem, escaping
    assert resolve_under("../b.png", "/data", allow_any_path=True) == ("/b.png", None)


def test_relative_paths_resolve_against_the_csv_folder_and_may_not_leave_it(tree):
    (tree / "root" / "csv" / "here.png").write_bytes(_png_bytes())
    f = _csv(tree / "root" / "csv" / "d.csv", ["here.png,here", "../img/a.png,up one", "../../outside.png,up two",
                                              f"{tree / 'root' / 'img' / 'a.png'},absolute"])
    r = _scan(CsvPairs(f, image_transform=None, tokenizer=None))
    assert r.counts == {"outside_root": 3} and r.n_ok == 1  # the CSV's folder, root/csv, is the root


def test_data_root_is_where_relative_paths_resolve_and_absolute_paths_must_lie(tree):
    root = tree / "root"
    f = _csv(root / "csv" / "d.csv", ["img/a.png,relative", f"{root / 'img' / 'a.png'},absolute inside",
                                      "../outside.png,escapes", f"{tree / 'outside.png'},absolute outside"])
    ds = CsvPairs(f, image_transform=None, tokenizer=None, policy=ReadPolicy(data_root=str(root)))
    assert _captions(ds) == ["relative", "absolute inside"]
    assert _scan(ds).counts == {"outside_root": 2}
    anywhere = CsvPairs(f, image_transform=None, tokenizer=None,
                        policy=ReadPolicy(data_root=str(root), allow_any_path=True))
    assert _captions(anywhere) == ["relative", "absolute inside", "escapes", "absolute outside"]


@pytest.mark.timeout(60)  # the FIFO would block a plain open() for ever
def test_devices_fifos_and_directories_are_never_read_even_when_any_path_is_allowed(tree):
    root = tree / "root"
    os.mkfifo(root / "img" / "fifo.png")
    (root / "img" / "dir.png").mkdir()
    f = _csv(root / "d.csv", ["/dev/zero,zeros", "img/fifo.png,fifo", "img/dir.png,directory", "img/a.png,fine"])
    r = _scan(CsvPairs(f, image_transform=None, tokenizer=None, policy=ReadPolicy(allow_any_path=True)))
    assert r.counts == {"not_regular_file": 3} and r.n_ok == 1
    assert sorted(e.rsplit(": ", 1)[1] for e in r.examples["not_regular_file"]) == [
        "is a FIFO", "is a device", "is a directory"]
    # the same in an image folder: a FIFO with an image name is counted, not read
    (root / "img" / "dir.png").rmdir()
    r = _scan(ImageFolder(root, image_transform=None))
    assert r.counts == {"not_regular_file": 1} and r.n_ok == 1


def test_a_file_over_the_byte_cap_is_skipped_unread(tree):
    root = tree / "root"
    (root / "img" / "big.png").write_bytes(_png_bytes() + bytes(1000))
    f = _csv(root / "d.csv", ["img/a.png,small", "img/big.png,big"])
    cap = len(_png_bytes()) + 10
    r = _scan(CsvPairs(f, image_transform=None, tokenizer=None, policy=ReadPolicy(max_image_bytes=cap)))
    assert r.counts == {"file_too_large": 1} and r.n_ok == 1


def _add(tar, name, data=b"", kind=tarfile.REGTYPE, target=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, target, len(data)
    tar.addfile(info, io.BytesIO(data) if data else None)


def test_tar_of_folders_never_reads_absolute_dotdot_or_link_members(tmp_path):
    path = tmp_path / "set.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "set/cat/good.png", _png_bytes())
        _add(tar, "set/dog/good.png", _png_bytes(9))
        _add(tar, "../evil/cat/up.png", _png_bytes())
        _add(tar, "/abs/cat/root.png", _png_bytes())
        _add(tar, "set/cat/link.png", kind=tarfile.SYMTYPE, target="/etc/passwd")
        _add(tar, "set/cat/hard.png", kind=tarfile.LNKTYPE, target="set/cat/good.png")
    ds = open_labelled(str(path), image_transform=None)
    assert ds.classes == ["cat", "dog"] and len(ds) == 2
    r = _scan(ds)
    assert r.counts == {"outside_root": 2, "not_regular_file": 2} and r.n_ok == 2
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_webdataset_sample_with_a_dotdot_or_absolute_member_is_skipped_once(tmp_path):
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as tar:
        _add(tar, "a.png", _png_bytes())
        _add(tar, "a.txt", b"fine")
        _add(tar, "../b.png", _png_bytes())
        _add(tar, "../b.txt", b"escapes")
        _add(tar, "/c.png", _png_bytes())
        _add(tar, "/c.txt", b"absolute")
        _add(tar, "d.png", kind=tarfile.SYMTYPE, target="/etc/passwd")
        _add(tar, "d.txt", b"a link")
        _add(tar, "e.png", _png_bytes(3))
        _add(tar, "e.txt", b"also fine")
    r = _scan(WdsPairs(str(shard), image_transform=None, tokenizer=None))
    assert r.counts == {"outside_root": 2, "not_regular_file": 1} and r.n_ok == 2
    small = WdsPairs(str(shard), image_transform=None, tokenizer=None, policy=ReadPolicy(max_image_bytes=20))
    with pytest.raises(DataError, match=r"file_too_large: 2"):  # both readable images are over 20 bytes
        _scan(small)
