"""cloob.data.published: a miniature of every supported on-disk layout, written here, read back.

Each image is one solid colour (``_color(k)``, image number k), so the image a dataset returns is
identified by its pixels and its label compared with the label written for it, independently of
the order the reader lists files in.
"""
import json
import pickle
import struct
import tarfile

import numpy as np
import pytest
import scipy.io as sio
import torch
import torchvision.datasets as tvd
from PIL import Image
from torchvision import transforms as T

from cloob.data import BadSample, DataError, ReadPolicy, text_image, texts
from cloob.data.published import DATASETS, find_layout, open_published, open_retrieval_json
from cloob.data.retrieval import CsvRetrieval


def _color(k: int) -> tuple[int, int, int]:
    return 10 + 20 * k, 250 - 20 * k, 60 + 15 * k  # neighbours 15-20 apart per channel: JPEG's error is a few


def _write(path, k, size=(8, 8), **save):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, _color(k)).save(path, **save)


def _which(x: torch.Tensor, grey=False) -> int:
    """The image number whose colour ``x`` (3, H, W in [0, 1]) is."""
    mean = (x.reshape(3, -1).mean(1) * 255).numpy()
    if grey:
        assert np.allclose(mean, mean[0]), "a grey image comes back with three equal channels"
        return int(np.argmin([abs(mean[0] - _color(k)[0]) for k in range(12)]))
    dist = [np.abs(mean - np.array(_color(k))).max() for k in range(12)]
    assert min(dist) < 6, f"colour {mean} is none written"
    return int(np.argmin(dist))


def _seen(ds, grey=False) -> dict[int, int]:
    """{image number: label} over the whole dataset; every item a (tensor, int)."""
    out = {}
    for i in range(len(ds)):
        x, y = ds[i]
        assert isinstance(x, torch.Tensor) and x.shape[0] == 3 and isinstance(y, int)
        k = _which(x, grey)
        assert k not in out, f"image {k} twice"
        out[k] = y
    return out


def _open(name, root, split="test"):
    return open_published(name, root, split, image_transform=T.ToTensor())


# ---------------------------------------------------------------- layout 1: reference zips
def test_reference_zip_folders_sorted_like_imagefolder(tmp_path):
    d = tmp_path / "birdsnap" / "test"
    _write(d / "Black_Tern" / "a.jpg", 0)
    _write(d / "Acadian_Flycatcher" / "b.jpg", 1)
    _write(d / "Acadian_Flycatcher" / "c.png", 2)
    _write(d / "Zebra_Finch" / "d.jpg", 3)
    ds = _open("birdsnap", tmp_path)
    assert (ds.layout, ds.name, ds.templates) == ("reference_zip", "birdsnap", None)
    assert ds.classes == ["Acadian Flycatcher", "Black Tern", "Zebra Finch"]  # ImageFolder's names
    assert _seen(ds) == {0: 1, 1: 0, 2: 0, 3: 2}
    assert ds.report.n_bad == 0 and find_layout("birdsnap", tmp_path) == ("reference_zip", d)


def test_country211_torchvision_layout_is_the_reference_one(tmp_path):
    _write(tmp_path / "country211" / "test" / "AE" / "x.jpg", 0)
    _write(tmp_path / "country211" / "test" / "AD" / "y.jpg", 1)
    ds = _open("country211", tmp_path)
    assert ds.layout == "reference_zip" and ds.classes == ["AD", "AE"] and _seen(ds) == {0: 1, 1: 0}


# ---------------------------------------------------------------- layout 3: ImageNet, ImageNetV2
def test_imagenet_synset_folders(tmp_path):
    d = tmp_path / "imagenet" / "val"
    for k, syn in enumerate(["n01484850", "n01440764", "n01443537"]):
        _write(d / syn / f"ILSVRC2012_val_{k:08d}.JPEG", k, format="JPEG")
    ds = _open("imagenet", tmp_path)
    assert ds.layout == "imagenet_synsets" and ds.classes == ["n01440764", "n01443537", "n01484850"]
    assert _seen(ds) == {0: 2, 1: 0, 2: 1}
    _write(d / "tench" / "x.JPEG", 5, format="JPEG")  # neither a synset nor an index: no guessing
    with pytest.raises(DataError, match=r"must all be synset ids .* found \['tench'\]"):
        _open("imagenet", tmp_path)


def test_imagenet_index_folders_are_labelled_numerically(tmp_path):
    d = tmp_path / "imagenet" / "val"
    for k, idx in enumerate(["10", "2", "0", "999"]):
        _write(d / idx / f"{k}.JPEG", k, format="JPEG")
    ds = _open("imagenet", tmp_path)
    assert ds.layout == "imagenet_index"
    assert _seen(ds) == {0: 10, 1: 2, 2: 0, 3: 999}  # lexicographic order would give 10 -> 1, 999 -> 3
    assert len(ds.classes) == 1000 and ds.classes[10] == "10" and ds.classes[5] == "5"


@pytest.mark.parametrize("variant", ["imagenetv2-matched-frequency-format-val", None])
def test_imagenetv2_index_folders(tmp_path, variant):
    base = tmp_path / "imagenetv2"
    d = base / variant if variant else base
    for k, idx in enumerate(["0", "2", "10", "10"]):
        _write(d / idx / f"{k}.jpeg", k, format="JPEG")
    if variant:  # another variant beside it: the matched-frequency one is chosen
        _write(base / "imagenetv2-top-images-format-val" / "5" / "x.jpeg", 9, format="JPEG")
    ds = _open("imagenetv2", tmp_path)
    assert ds.layout == "imagenetv2_index" and find_layout("imagenetv2", tmp_path)[1] == d
    assert _seen(ds) == {0: 0, 1: 2, 2: 10, 3: 10}
    assert ds.classes == [str(i) for i in range(11)]


# ---------------------------------------------------------------- layout 2: torchvision's files
# CIFAR, Flowers102 and STL10 check the md5 of the published files, which a miniature cannot match:
# they are read through subclasses that skip ONLY the checksum (md5 None = torchvision's existence check).
class _NoMd5CIFAR10(tvd.CIFAR10):
    train_list = [[f, None] for f, _ in tvd.CIFAR10.train_list]
    test_list = [[f, None] for f, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}


class _NoMd5CIFAR100(tvd.CIFAR100):
    train_list = [[f, None] for f, _ in tvd.CIFAR100.train_list]
    test_list = [[f, None] for f, _ in tvd.CIFAR100.test_list]
    meta = {**tvd.CIFAR100.meta, "md5": None}


class _NoMd5Flowers102(tvd.Flowers102):
    _file_dict = {k: (f, None) for k, (f, _) in tvd.Flowers102._file_dict.items()}


class _NoMd5STL10(tvd.STL10):
    train_list = [[f, None] for f, _ in tvd.STL10.train_list]
    test_list = [[f, None] for f, _ in tvd.STL10.test_list]


def _no_md5(monkeypatch, name, cls):
    monkeypatch.setitem(DATASETS[name]["torchvision"], "class", cls)


def test_flowers102(tmp_path, monkeypatch):
    _no_md5(monkeypatch, "flowers102", _NoMd5Flowers102)
    base = tmp_path / "flowers-102"
    for image_id in range(1, 7):
        _write(base / "jpg" / f"image_{image_id:05d}.jpg", image_id)
    sio.savemat(base / "imagelabels.mat", {"labels": np.array([[1, 1, 2, 3, 3, 102]])})  # 1-based
    sio.savemat(base / "setid.mat", {"trnid": np.array([[1, 2]]), "valid": np.array([[3, 4]]),
                                     "tstid": np.array([[5, 6, 2]])})
    ds = _open("flowers102", tmp_path)
    assert ds.layout == "torchvision" and ds.name == "flowers102"
    assert _seen(ds) == {5: 2, 6: 101, 2: 0}
    assert len(ds.classes) == 102 and ds.classes[0] == "pink primrose" and ds.classes[101] == "blackberry lily"
    assert _seen(_open("flowers102", tmp_path, "val")) == {3: 1, 4: 2}


def test_gtsrb(tmp_path):
    base = tmp_path / "gtsrb"
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for k, cls in enumerate([14, 0, 42]):
        _write(base / "GTSRB" / "Final_Test" / "Images" / f"{k:05d}.ppm", k)
        rows.append(f"{k:05d}.ppm;8;8;0;0;7;7;{cls}")
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    ds = _open("gtsrb", tmp_path)
    assert _seen(ds) == {0: 14, 1: 0, 2: 42} and ds.classes == [str(i) for i in range(43)]


def test_stanford_cars(tmp_path):
    base = tmp_path / "stanford_cars"
    names = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]
    ann = np.zeros(3, dtype=[("fname", "O"), ("class", "O")])
    for k, cls in enumerate([3, 1, 2]):  # 1-based
        _write(base / "cars_test" / f"{k:05d}.jpg", k)
        ann[k] = (f"{k:05d}.jpg", cls)
    (base / "devkit").mkdir()
    sio.savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array(names, dtype=object)})
    sio.savemat(base / "cars_test_annos_withlabels.mat", {"annotations": ann})
    ds = _open("stanford_cars", tmp_path)
    assert ds.layout == "torchvision" and ds.classes == names and _seen(ds) == {0: 2, 1: 0, 2: 1}


def test_torchvision_bad_files_are_bad_samples(tmp_path):
    # Food101 takes a loader: cloob's reader applies the policy's pixel limit
    base = tmp_path / "food-101"
    _write(base / "images" / "apple_pie" / "1.jpg", 0, size=(8, 8))
    _write(base / "images" / "apple_pie" / "2.jpg", 1, size=(40, 40))
    (base / "meta").mkdir()
    (base / "meta" / "test.json").write_text(json.dumps({"apple_pie": ["apple_pie/1", "apple_pie/2"]}))
    small = ReadPolicy(max_image_pixels=100)
    ds = open_published("food101", tmp_path, image_transform=T.ToTensor(), policy=small)
    assert _which(ds[0][0]) == 0 and isinstance(ds[1], BadSample) and ds[1].reason == "too_many_pixels"
    assert pickle.loads(pickle.dumps(ds))[1].reason == "too_many_pixels"  # the policy travels to workers
    with pytest.raises(DataError, match="too_many_pixels"):
        open_published("food101", tmp_path, policy=small, strict=True)[1]
    # GTSRB opens its files itself: a file it cannot open is still a counted bad sample
    rows = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\ngone.ppm;8;8;0;0;7;7;3\n"
    (tmp_path / "gtsrb" / "GTSRB" / "Final_Test" / "Images").mkdir(parents=True)
    (tmp_path / "gtsrb" / "GT-final_test.csv").write_text(rows)
    bad = open_published("gtsrb", tmp_path)[0]
    assert isinstance(bad, BadSample) and bad.reason == "missing_file" and bad.path == "gtsrb[0]"


def test_dtd(tmp_path):
    base = tmp_path / "dtd" / "dtd"
    files = {0: "zigzagged/zigzagged_0002.jpg", 1: "banded/banded_0001.jpg", 2: "banded/banded_0003.jpg"}
    for k, f in files.items():
        _write(base / "images" / f, k)
    _write(base / "images" / "banded" / "banded_0009.jpg", 9)  # in no test list: not read
    (base / "labels").mkdir()
    (base / "labels" / "test1.txt").write_text("\n".join(files.values()) + "\n")
    ds = _open("dtd", tmp_path)
    assert ds.classes == ["banded", "zigzagged"] and _seen(ds) == {0: 1, 1: 0, 2: 0}


def test_food101(tmp_path):
    base = tmp_path / "food-101"
    _write(base / "images" / "baby_back_ribs" / "3.jpg", 0)
    _write(base / "images" / "apple_pie" / "1.jpg", 1)
    _write(base / "images" / "apple_pie" / "2.jpg", 2)
    (base / "meta").mkdir()
    (base / "meta" / "test.json").write_text(json.dumps({"baby_back_ribs": ["baby_back_ribs/3"],
                                                         "apple_pie": ["apple_pie/1", "apple_pie/2"]}))
    ds = _open("food101", tmp_path)
    assert ds.classes == ["apple_pie", "baby_back_ribs"] and _seen(ds) == {0: 1, 1: 0, 2: 0}


def test_oxford_pets(tmp_path):
    base = tmp_path / "oxford-iiit-pet"
    lines = []
    for k, (image_id, cls) in enumerate([("american_bulldog_10", 2), ("Abyssinian_1", 1), ("Abyssinian_2", 1)]):
        _write(base / "images" / f"{image_id}.jpg", k)
        lines.append(f"{image_id} {cls} {cls} 1")
    (base / "annotations").mkdir()
    (base / "annotations" / "test.txt").write_text("\n".join(lines) + "\n")
    _write(base / "images" / "Bengal_3.jpg", 3)
    (base / "annotations" / "trainval.txt").write_text("Bengal_3 6 1 1\n")
    ds = _open("pets", tmp_path)
    assert ds.classes == ["Abyssinian", "American Bulldog"] and _seen(ds) == {0: 1, 1: 0, 2: 0}
    assert _seen(_open("pets", tmp_path, "train")) == {3: 5}  # cloob's train is torchvision's trainval


def test_fgvc_aircraft(tmp_path):
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    pairs = [("0034309", "A300B4"), ("0034310", "707-320"), ("1000001", "DC-3")]
    for k, (image, _) in enumerate(pairs):
        _write(data / "images" / f"{image}.jpg", k)
    (data / "variants.txt").write_text("707-320\nA300B4\nDC-3\n")
    (data / "images_variant_test.txt").write_text("".join(f"{i} {v}\n" for i, v in pairs))
    ds = _open("fgvc_aircraft", tmp_path)
    assert ds.classes == ["707-320", "A300B4", "DC-3"] and _seen(ds) == {0: 1, 1: 0, 2: 2}


def test_eurosat_whole_set(tmp_path):
    d = tmp_path / "eurosat" / "2750"
    _write(d / "Forest" / "Forest_1.jpg", 0)
    _write(d / "AnnualCrop" / "AnnualCrop_1.jpg", 1)
    _write(d / "Forest" / "Forest_2.jpg", 2)
    ds = _open("eurosat", tmp_path)
    assert ds.classes == ["AnnualCrop", "Forest"] and _seen(ds) == {0: 1, 1: 0, 2: 1}
    with pytest.raises(DataError, match="no split 'train'"):
        open_published("eurosat", tmp_path, "train")


def test_sun397_sorted(tmp_path):
    d = tmp_path / "SUN397"
    d.mkdir()
    (d / "ClassName.txt").write_text("/a/abbey\n/b/bakery/shop\n")
    _write(d / "b" / "bakery" / "shop" / "sun_ccc.jpg", 0)
    _write(d / "a" / "abbey" / "sun_bbb.jpg", 1)
    _write(d / "b" / "bakery" / "shop" / "sun_aaa.jpg", 2)
    ds = _open("sun397", tmp_path)
    assert ds.classes == ["abbey", "bakery/shop"] and _seen(ds) == {0: 1, 1: 0, 2: 1}
    assert [_which(ds[i][0]) for i in range(3)] == [1, 2, 0]  # sorted paths, whatever rglob's order


def _cifar_rows(ks):
    return np.stack([np.repeat(np.array(_color(k), dtype=np.uint8), 1024) for k in ks])  # planar R, G, B


def test_cifar10_pickles(tmp_path, monkeypatch):
    _no_md5(monkeypatch, "cifar10", _NoMd5CIFAR10)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    dump = lambda f, obj: (d / f).write_bytes(pickle.dumps(obj))  # noqa: E731
    dump("batches.meta", {"label_names": names})
    dump("test_batch", {"data": _cifar_rows([0, 1, 2]), "labels": [3, 0, 9]})
    for b in range(1, 6):
        dump(f"data_batch_{b}", {"data": _cifar_rows([4 + b]), "labels": [b]})
    ds = _open("cifar10", tmp_path)
    assert ds.classes == names and _seen(ds) == {0: 3, 1: 0, 2: 9}
    assert _seen(_open("cifar10", tmp_path, "train")) == {5: 1, 6: 2, 7: 3, 8: 4, 9: 5}


def test_cifar100_pickles(tmp_path, monkeypatch):
    _no_md5(monkeypatch, "cifar100", _NoMd5CIFAR100)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    names = [f"class{i}" for i in range(100)]
    (d / "meta").write_bytes(pickle.dumps({"fine_label_names": names}))
    (d / "test").write_bytes(pickle.dumps({"data": _cifar_rows([0, 1]), "fine_labels": [99, 5]}))
    (d / "train").write_bytes(pickle.dumps({"data": _cifar_rows([2]), "fine_labels": [7]}))
    ds = _open("cifar100", tmp_path)
    assert ds.classes == names and _seen(ds) == {0: 99, 1: 5}


def _idx(path, magic, dims, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in dims) + data)


def test_mnist_idx(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    for prefix, ks, labels in (("t10k", [0, 1, 2], [7, 2, 1]), ("train", [3], [5])):
        pixels = b"".join(bytes([_color(k)[0]]) * 16 for k in ks)  # 4x4 grey images
        _idx(raw / f"{prefix}-images-idx3-ubyte", 0x803, (len(ks), 4, 4), pixels)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", 0x801, (len(ks),), bytes(labels))
    ds = _open("mnist", tmp_path)
    assert ds.classes[0] == "0 - zero" and len(ds.classes) == 10
    assert _seen(ds, grey=True) == {0: 7, 1: 2, 2: 1}


def test_stl10_binaries(tmp_path, monkeypatch):
    _no_md5(monkeypatch, "stl10", _NoMd5STL10)
    d = tmp_path / "stl10_binary"
    d.mkdir()
    (d / "test_X.bin").write_bytes(b"".join(np.repeat(np.array(_color(k), np.uint8), 96 * 96).tobytes()
                                            for k in (0, 1, 2)))
    (d / "test_y.bin").write_bytes(bytes([1, 10, 4]))  # 1-based
    for f in ("train_X.bin", "train_y.bin", "unlabeled_X.bin"):
        (d / f).write_bytes(b"")
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (d / "class_names.txt").write_text("\n".join(names) + "\n")
    ds = _open("stl10", tmp_path)
    assert ds.classes == names and _seen(ds) == {0: 0, 1: 9, 2: 3}


# ---------------------------------------------------------------- layout 4: CLIP_benchmark webdataset
def _member(tar, name, data: bytes):
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _image_bytes(k, fmt, **save):
    import io

    b = io.BytesIO()
    Image.new("RGB", (8, 8), _color(k)).save(b, format=fmt, **save)
    return b.getvalue()


def test_clip_benchmark_webdataset(tmp_path):
    d = tmp_path / "wds_cars"  # CLIP_benchmark's name for Stanford Cars
    (d / "test").mkdir(parents=True)
    (d / "test" / "nshards.txt").write_text("2\n")
    with tarfile.open(d / "test" / "0.tar", "w") as tar:
        _member(tar, "s0000000.webp", _image_bytes(0, "WEBP", lossless=True))
        _member(tar, "s0000000.cls", b"2")
        _member(tar, "s0000001.jpg", _image_bytes(1, "JPEG"))
        _member(tar, "s0000001.cls", b"0\n")
    with tarfile.open(d / "test" / "1.tar", "w") as tar:
        _member(tar, "s0000002.png", _image_bytes(2, "PNG"))
        _member(tar, "s0000002.cls", b"1")
        _member(tar, "s0000003.cls", b"1")  # no image: counted, not read
    (d / "classnames.txt").write_text("AM General Hummer SUV 2000\nAcura RL Sedan 2012\nAcura TL Sedan 2012\n")
    (d / "zeroshot_classification_templates.txt").write_text("a photo of a {c}.\na photo of my {c}.\n")
    ds = _open("stanford_cars", tmp_path)
    assert (ds.layout, ds.name, len(ds)) == ("clip_benchmark_wds", "stanford_cars", 3)
    assert ds.classes == ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]
    assert ds.templates == ["a photo of a {c}.", "a photo of my {c}."]
    assert _seen(ds) == {0: 2, 1: 0, 2: 1}
    assert ds.report.counts == {"missing_column": 1}
    assert [_which(ds[i][0]) for i in range(3)] == [0, 1, 2]  # shard order, as CLIP_benchmark reads it
    copy = pickle.loads(pickle.dumps(ds))  # as DataLoader workers receive it: open shard handles left behind
    assert _which(copy[2][0]) == 2 and copy[2][1] == 1


def test_webdataset_under_the_bare_name_beats_the_reference_probe(tmp_path):
    d = tmp_path / "mnist"
    (d / "test").mkdir(parents=True)
    (d / "test" / "nshards.txt").write_text("1")
    with tarfile.open(d / "test" / "0.tar", "w") as tar:
        _member(tar, "a.png", _image_bytes(4, "PNG"))
        _member(tar, "a.cls", b"3")
    ds = _open("mnist", tmp_path)
    assert find_layout("mnist", tmp_path) == ("clip_benchmark_wds", d)
    assert ds.templates is None and ds.classes == ["0", "1", "2", "3"] and _seen(ds) == {4: 3}
    (d / "test" / "nshards.txt").write_text("2")  # a listed shard that is not there
    with pytest.raises(DataError, match="1.tar is missing"):
        _open("mnist", tmp_path)


# ---------------------------------------------------------------- not there
def test_missing_dataset_is_one_line_naming_paths_and_layouts(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as e:
        open_published("birdsnap", root)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("birdsnap: ")
    assert f"{root}/birdsnap/test/<class>/*.jpg (reference zeroshot zip)" in msg
    assert f"{root}/wds_birdsnap/test/nshards.txt (CLIP_benchmark webdataset)" in msg
    assert "Reproduce the paper's Table 1" in msg
    with pytest.raises(DataError) as e:
        find_layout("flowers102", root)
    msg = str(e.value)
    assert "\n" not in msg and f"{root}/flowers-102/jpg" in msg and "(torchvision Flowers102)" in msg
    assert f"{root}/wds_vtab-flowers/test/nshards.txt" in msg
    with pytest.raises(DataError) as e:
        find_layout("imagenet", root)
    assert f"{root}/imagenet/val/" in str(e.value) and "ImageNet class folders" in str(e.value)


def test_unreadable_torchvision_files_are_a_data_error(tmp_path):
    (tmp_path / "flowers-102" / "jpg").mkdir(parents=True)
    for f in ("imagelabels.mat", "setid.mat"):
        (tmp_path / "flowers-102" / f).write_bytes(b"not a mat file")
    with pytest.raises(DataError, match=f"flowers102: torchvision Flowers102 could not read {tmp_path}"):
        open_published("flowers102", tmp_path)  # the real class: these files fail its md5 check


def test_partly_present_torchvision_files_are_named(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"x")
    with pytest.raises(DataError, match=r"missing .*data_batch_1"):
        find_layout("cifar10", tmp_path)


def test_unknown_name_lists_the_known_ones(tmp_path):
    with pytest.raises(DataError) as e:
        open_published("imagenet-1k", tmp_path)
    for name in ("birdsnap", "country211", "flowers102", "gtsrb", "ucf101", "stanford_cars", "imagenet",
                 "imagenetv2", "cifar10", "cifar100", "dtd", "food101", "pets", "fgvc_aircraft", "eurosat",
                 "sun397", "mnist", "stl10"):
        assert name in str(e.value)


# ---------------------------------------------------------------- retrieval: Karpathy JSON
def test_karpathy_flickr8k(tmp_path):
    d = tmp_path / "flickr8k"
    _write(d / "Flicker8k_Dataset" / "a.jpg", 0)
    _write(d / "Flicker8k_Dataset" / "b.jpg", 1)
    _write(d / "Flicker8k_Dataset" / "c.jpg", 2)
    images = [
        {"filename": "a.jpg", "split": "test", "sentences": [{"raw": "A dog runs ."}, {"raw": "a brown dog"}]},
        {"filename": "b.jpg", "split": "train", "sentences": [{"raw": "a bird"}]},
        {"filename": "c.jpg", "split": "test", "sentences": [{"raw": "  "}, {"raw": "a cat"}]},
        {"filename": "../secret.jpg", "split": "test", "sentences": [{"raw": "outside"}]},
    ]
    (d / "dataset_flickr8k.json").write_text(json.dumps({"images": images, "dataset": "flickr8k"}))
    ds = open_retrieval_json(d, image_transform=T.ToTensor())
    assert isinstance(ds, CsvRetrieval) and len(ds) == 2
    assert ds.captions == [["A dog runs .", "a brown dog"], ["a cat"]]
    assert texts(ds) == ["A dog runs .", "a brown dog", "a cat"] and text_image(ds) == [0, 0, 1]
    x, i = ds[1]
    assert isinstance(x, torch.Tensor) and i == 1 and _which(x) == 2
    assert ds.report.counts == {"empty_caption": 1, "outside_root": 1}
    assert open_retrieval_json(d / "dataset_flickr8k.json", "train").captions == [["a bird"]]


def test_karpathy_coco_filepath(tmp_path):
    d = tmp_path / "mscoco_captions"
    _write(d / "val2014" / "COCO_val2014_000000000042.jpg", 3)
    _write(d / "train2014" / "COCO_train2014_000000000007.jpg", 4)
    images = [
        {"filepath": "train2014", "filename": "COCO_train2014_000000000007.jpg", "split": "restval",
         "sentences": [{"raw": "a train"}]},
        {"filepath": "val2014", "filename": "COCO_val2014_000000000042.jpg", "split": "test",
         "sentences": [{"raw": "a plate of food"}]},
    ]
    (d / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    ds = open_retrieval_json(d, "test", image_transform=T.ToTensor())
    assert ds.captions == [["a plate of food"]] and _which(ds[0][0]) == 3
    (d / "val2014").rename(d / "elsewhere")
    with pytest.raises(DataError, match="images not found: tried .*val2014/COCO_val2014_000000000042.jpg"):
        open_retrieval_json(d, "test")
