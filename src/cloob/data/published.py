"""Zero-shot benchmark datasets read from a local root in their published layouts; nothing is downloaded.

``open_published(name, root, split)`` tries, in this order, under ``root``:

1. ``reference_zip``: the CLOOB reference repository's zero-shot zips, extracted:
   ``root/<name>/<split>/<class>/*.jpg`` (any name; UCF101 there is middle video frames).
   Read by :class:`~cloob.data.folder.ImageFolder`: labels in sorted folder order, as the
   reference notebook's ``torchvision.datasets.ImageFolder`` numbers them. torchvision's own
   Country211 layout (``root/country211/<split>/<CC>/*.jpg``) is this layout.
2. ``torchvision``: the published files that torchvision's dataset class reads (``download=False``),
   looked for before the class is built, so a missing dataset never reaches torchvision's vague error.
   EuroSAT and SUN397 have no split in torchvision: their ``test`` is the whole set.
3. ``imagenet_synsets`` / ``imagenet_index``: ImageNet val as class folders
   ``root/imagenet/val/n01440764/*.JPEG`` or ``root/imagenet/val/0..999/``; ``imagenetv2_index``:
   ``root/imagenetv2/[<variant>/]0..999/*.jpeg`` (the matched-frequency variant when there are several).
   ImageNet's ``test`` is its val set. Synset folders are numbered in sorted order, ImageNet's
   standard class order when all 1000 are there (on a subset, the positions among those present).
4. ``clip_benchmark_wds``: CLIP_benchmark's webdataset ``D = root/wds_<name>`` (or its CLIP_benchmark
   name, e.g. ``wds_cars``, ``wds_vtab-flowers``; or ``root/<name>``): ``D/<split>/nshards.txt``,
   shards ``D/<split>/0.tar ..``, each sample an image (``.webp``/``.jpg``/``.png``) and a ``.cls``
   integer label; ``D/classnames.txt`` and ``D/zeroshot_classification_templates.txt``. The
   ``vtab/<x>`` names (CLIP_benchmark's VTAB+ suite) are read from ``root/wds_vtab-<x>`` only.

Labels of class folders named by integers (ImageNet's index layout, ImageNetV2, in any folder
layout) are the integers themselves, not sort positions (lexicographic order would put 10 before 2):
``ds.classes`` then covers every index up to the largest folder, ``ds.classes[k]`` being folder
``k``'s name (``str(k)`` for an index with no folder), so ``classes[label]`` and an external
1000-name ImageNet list indexed by label both stay right on a subset.

Every dataset returned has ``ds[i] -> (image, label int)`` (or a :class:`~cloob.data.bad.BadSample`),
``ds.classes`` (class names or ids in label order: torchvision's names, ``classnames.txt``, or the
folder names with ``_`` shown as a space, ImageFolder's rule), ``ds.name``, ``ds.report``,
``ds.layout`` and ``ds.templates`` (the webdataset's template lines; None for the other layouts).

``open_retrieval_json`` (:mod:`cloob.data.karpathy`) reads the Karpathy-split JSON of Flickr8k, Flickr30k and
COCO; CLIP_benchmark's webdataset split is :class:`cloob.data.wds_labelled.WdsLabelled`.
"""
from __future__ import annotations

import functools
import inspect
import re
from pathlib import Path
from typing import Callable

from PIL import Image
from torch.utils.data import Dataset

from cloob.data.bad import BadSampleError, BadSampleReport, DataError, handle_bad, load_image, to_rgb
from cloob.data.folder import ImageFolder
from cloob.data.karpathy import HINT, open_retrieval_json  # noqa: F401 - the published retrieval sets, here too
from cloob.data.policy import DEFAULT_POLICY, ReadPolicy
from cloob.data.wds_labelled import WdsLabelled, digits


# ---------------------------------------------------------------- registry
def _tv(cls, splits: dict[str, dict], files, **more) -> dict:
    """How torchvision reads a dataset.

    cls: the class name in ``torchvision.datasets`` (or a class); splits: cloob split -> keyword
    arguments of the class; files: every path under root that the class reads for a split: a tuple
    of templates (``{split}``: the class's own split name) or a dict cloob split -> tuple.
    more: ``n_classes`` (the class has no ``classes``: ids ``"0".."n-1"``), ``fixup`` (called on
    the built dataset).
    """
    return {"class": cls, "splits": splits, "files": files, **more}


def _by_split(*splits: str) -> dict[str, dict]:
    return {s: {"split": s} for s in splits}


def _sort_files(ds) -> None:
    # torchvision lists SUN397 with rglob, in the file system's order: sort, so that index i is
    # the same image on every machine
    pairs = sorted(zip(ds._image_files, ds._labels))
    ds._image_files, ds._labels = [p for p, _ in pairs], [y for _, y in pairs]


def _under(folder: str, *files: str) -> tuple[str, ...]:
    return tuple(f"{folder}/{f}" for f in files)


_TRAIN_TEST = {"train": {"train": True}, "test": {"train": False}}
# CIFAR, MNIST and STL10 check every file, whatever the split
_CIFAR10 = _under("cifar-10-batches-py", "batches.meta", "test_batch", *(f"data_batch_{k}" for k in range(1, 6)))
_STL10 = _under("stl10_binary", "train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin")
_MNIST = _under("MNIST/raw", *(f"{p}-{k}-ubyte" for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1")))
_CARS = "stanford_cars"
_FGVC = "fgvc-aircraft-2013b/data"
# CLIP_benchmark's VTAB+ names (``vtab/<x>``): read from its webdataset ``wds_vtab-<x>`` only
VTAB = ("caltech101", "cifar10", "cifar100", "clevr_count_all", "clevr_closest_object_distance",
        "diabetic_retinopathy", "dmlab", "dsprites_label_orientation", "dsprites_label_x_position", "dtd", "eurosat",
        "kitti_closest_vehicle_distance", "flowers", "pets", "pcam", "resisc45", "smallnorb_label_azimuth",
        "smallnorb_label_elevation", "sun397", "svhn")

# name -> how to read it: "torchvision" (see _tv), "folders" (layout 3: "imagenet" or "imagenetv2"), "wds"
# (CLIP_benchmark's webdataset folder names besides wds_<name>, where "/" is "-" as CLIP_benchmark writes it).
# Every name also tries layouts 1 and 4.
DATASETS: dict[str, dict] = {
    "birdsnap": {},
    "country211": {},  # torchvision's layout, root/country211/<split>/<CC>/*.jpg, is the reference one
    "flowers102": {"torchvision": _tv("Flowers102", _by_split("train", "val", "test"),
                                      _under("flowers-102", "jpg", "imagelabels.mat", "setid.mat")),
                   "wds": ("wds_vtab-flowers",)},
    "gtsrb": {"torchvision": _tv("GTSRB", _by_split("train", "test"),
                                 {"test": _under("gtsrb", "GTSRB/Final_Test/Images", "GT-final_test.csv"),
                                  "train": _under("gtsrb", "GTSRB/Training")}, n_classes=43)},
    "ucf101": {},
    "stanford_cars": {"torchvision": _tv("StanfordCars", _by_split("train", "test"),
                                         {"test": _under(_CARS, "devkit/cars_meta.mat", "cars_test",
                                                         "cars_test_annos_withlabels.mat"),
                                          "train": _under(_CARS, "devkit/cars_meta.mat", "cars_train",
                                                          "devkit/cars_train_annos.mat")}),
                      "wds": ("wds_cars",)},
    "imagenet": {"folders": "imagenet", "wds": ("wds_imagenet1k",)},
    "imagenetv2": {"folders": "imagenetv2"},
    "cifar10": {"torchvision": _tv("CIFAR10", _TRAIN_TEST, _CIFAR10), "wds": ("wds_vtab-cifar10",)},
    "cifar100": {"torchvision": _tv("CIFAR100", _TRAIN_TEST, _under("cifar-100-python", "meta", "train", "test")),
                 "wds": ("wds_vtab-cifar100",)},
    "dtd": {"torchvision": _tv("DTD", _by_split("train", "val", "test"),
                               _under("dtd/dtd", "images", "labels/{split}1.txt")),
            "wds": ("wds_vtab-dtd",)},
    "food101": {"torchvision": _tv("Food101", _by_split("train", "test"),
                                   _under("food-101", "images", "meta/{split}.json"))},
    "pets": {"torchvision": _tv("OxfordIIITPet", {"train": {"split": "trainval"}, "test": {"split": "test"}},
                                _under("oxford-iiit-pet", "images", "annotations/{split}.txt")),
             "wds": ("wds_vtab-pets",)},
    "fgvc_aircraft": {"torchvision": _tv("FGVCAircraft", _by_split("train", "val", "trainval", "test"),
                                         _under(_FGVC, "images", "variants.txt", "images_variant_{split}.txt"))},
    # torchvision has no split for EuroSAT and SUN397: "test" is the whole set
    "eurosat": {"torchvision": _tv("EuroSAT", {"test": {}}, ("eurosat/2750",)), "wds": ("wds_vtab-eurosat",)},
    "sun397": {"torchvision": _tv("SUN397", {"test": {}}, ("SUN397/ClassName.txt",), fixup=_sort_files),
               "wds": ("wds_vtab-sun397",)},
    "mnist": {"torchvision": _tv("MNIST", _TRAIN_TEST, _MNIST)},
    "stl10": {"torchvision": _tv("STL10", _by_split("train", "test"), _STL10, n_classes=10)},
    **{f"vtab/{n}": {} for n in VTAB},
}
IMAGENET_SPLIT = {"test": "val", "val": "val", "train": "train"}  # ImageNet's labelled "test" is its val set


# ---------------------------------------------------------------- finding a layout
def _indices(names: list[str]) -> bool:
    """Class folders named by class index (0..999), not by class name."""
    return bool(names) and all(digits(n) for n in names)


def _subdirs(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.is_dir())


def _tv_files(entry: dict, split: str) -> tuple[str, ...]:
    files, own = entry["files"], entry["splits"][split].get("split", split)
    return files[split] if isinstance(files, dict) else tuple(f.format(split=own) for f in files)


def _imagenetv2_dir(base: Path) -> Path | None:
    """``base`` itself when it holds index folders, else its one variant folder that does (the
    matched-frequency one when there are several)."""
    if not base.is_dir():
        return None
    if _indices(_subdirs(base)):
        return base
    variants = [base / n for n in _subdirs(base) if _indices(_subdirs(base / n))]
    if len(variants) > 1:
        matched = [v for v in variants if "matched-frequency" in v.name]
        if len(matched) != 1:
            raise DataError(f"imagenetv2: several variants under {base}: {', '.join(v.name for v in variants)}; "
                            "point --root at a folder holding one of them")
        variants = matched
    return variants[0] if variants else None


def _folder_kind(d: Path) -> str:
    """'imagenet_synsets' or 'imagenet_index' from the class folder names of ``d``."""
    names = _subdirs(d)
    synset = re.compile(r"n[0-9]{8}")
    if _indices(names):
        return "imagenet_index"
    if names and all(synset.fullmatch(n) for n in names):
        return "imagenet_synsets"
    odd = [n for n in names if not digits(n) and not synset.fullmatch(n)][:3]
    raise DataError(f"imagenet: the class folders of {d} must all be synset ids (n01440764) or all class indices "
                    f"(0..999); found {odd or 'none'}")


def _candidates(name: str, root: Path, split: str):
    """Yield (layout, where, description) for every layout of ``name``; ``where`` is None when absent.

    ``description`` names the paths looked for, for the not-found message.
    """
    entry = DATASETS[name]
    d = root / name / split
    present = d.is_dir() and not (d / "nshards.txt").exists()  # a webdataset split is layout 4
    yield "reference_zip", d if present else None, f"{d}/<class>/*.jpg (reference zeroshot zip)"
    tv = entry.get("torchvision")
    if tv is not None:
        cls = tv["class"] if isinstance(tv["class"], str) else tv["class"].__name__
        if split not in tv["splits"]:
            yield "torchvision", None, f"torchvision {cls} (no split {split!r}; it has {', '.join(tv['splits'])})"
        else:
            files = [root / f for f in _tv_files(tv, split)]
            missing = [str(f) for f in files if not f.exists()]
            note = f"; missing {', '.join(missing)}" if missing and len(missing) < len(files) else ""
            yield "torchvision", None if missing else root, f"{' + '.join(map(str, files))} (torchvision {cls}{note})"
    if entry.get("folders") == "imagenet" and split in IMAGENET_SPLIT:
        d = root / "imagenet" / IMAGENET_SPLIT[split]
        what = f"{d}/<n01440764 or 0..999>/*.JPEG (ImageNet class folders)"
        yield (_folder_kind(d), d, what) if d.is_dir() else ("imagenet", None, what)
    if entry.get("folders") == "imagenetv2" and split == "test":
        base = root / "imagenetv2"
        yield "imagenetv2_index", _imagenetv2_dir(base), f"{base}/[<variant>/]<0..999>/*.jpeg (ImageNetV2 folders)"
    for dirname in dict.fromkeys((f"wds_{name.replace('/', '-')}", *entry.get("wds", ()), name)):
        f = root / dirname / split / "nshards.txt"
        yield "clip_benchmark_wds", root / dirname if f.is_file() else None, f"{f} (CLIP_benchmark webdataset)"


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def find_layout(name: str, root: str | Path, split: str = "test") -> tuple[str, Path]:
    """(layout, where) of the first layout of ``name`` present under ``root``, in the module's order.

    ``where``: the class-folder directory (reference_zip, imagenet_*), ``root`` (torchvision) or the
    webdataset directory ``D`` (clip_benchmark_wds). Raises :class:`DataError` (one line) naming
    every path looked for when none is there, or listing the known names for an unknown one.
    """
    _check_name(name)
    root = Path(root)
    tried = []
    for layout, where, what in _candidates(name, root, split):
        if where is not None:
            return layout, where
        tried.append(what)
    raise DataError(f"{name}: {split} split not found under {root}: tried {', '.join(tried)}; {HINT}")


# ---------------------------------------------------------------- readers
def _class_folder(d: Path, image_transform, strict: bool, policy: ReadPolicy) -> ImageFolder:
    """``d/<class>/*`` through ImageFolder; folders named by integers are labelled by that integer."""
    names = _subdirs(d)
    classes = None
    if _indices(names):
        by_id: dict[int, str] = {}
        for n in names:
            if int(n) in by_id:
                raise DataError(f"{d}: class folders {by_id[int(n)]!r} and {n!r} name the same index {int(n)}")
            by_id[int(n)] = n
        classes = [by_id.get(k, str(k)) for k in range(max(by_id) + 1)]
    return ImageFolder(d, image_transform=image_transform, strict=strict, classes=classes, policy=policy)


class TorchvisionLabelled(Dataset):
    """A torchvision dataset as cloob reads labelled images: ``ds[i] -> (transformed RGB image, int label)``.

    Image files go through cloob's reader (byte and pixel limits, bad files counted as
    :class:`~cloob.data.bad.BadSample`) where the class takes a ``loader`` (Flowers102, StanfordCars,
    DTD, Food101, FGVCAircraft, EuroSAT, SUN397); GTSRB and OxfordIIITPet open their files with
    Pillow themselves, and CIFAR, MNIST and STL10 hold arrays. A file those fail to read is still a
    counted bad sample, named by index.
    """

    def __init__(self, name: str, tv, classes: list[str], image_transform: Callable | None, strict: bool):
        self.name, self.torchvision, self.classes = name, tv, classes
        self.image_transform, self.strict = image_transform, strict
        self.report = BadSampleReport(name)
        self.layout, self.templates = "torchvision", None

    def __len__(self) -> int:
        return len(self.torchvision)

    def _read(self, i: int):
        """torchvision's (PIL image, label); Pillow's own failures (GTSRB, OxfordIIITPet) become a
        BadSampleError named by index, as those classes give no path."""
        where = f"{self.name}[{i}]"
        try:
            return self.torchvision[i]
        except FileNotFoundError as e:
            raise BadSampleError("missing_file", where, i, str(e)) from e
        except Image.DecompressionBombError as e:
            raise BadSampleError("too_many_pixels", where, i, str(e)) from e
        except OSError as e:  # an unreadable or truncated image
            raise BadSampleError("corrupt_image", where, i, str(e)) from e

    def __getitem__(self, i: int):
        try:
            image, label = self._read(i)
        except BadSampleError as e:
            return handle_bad(e, self.strict)
        image = to_rgb(image)  # MNIST is grey
        return (self.image_transform(image) if self.image_transform is not None else image), int(label)


def _open_torchvision(name: str, root: Path, split: str, image_transform, strict: bool, policy: ReadPolicy):
    import torchvision.datasets

    tv = DATASETS[name]["torchvision"]
    cls = getattr(torchvision.datasets, tv["class"]) if isinstance(tv["class"], str) else tv["class"]
    kwargs = dict(tv["splits"][split], download=False)
    if "loader" in inspect.signature(cls).parameters:
        kwargs["loader"] = functools.partial(load_image, policy=policy)  # picklable for DataLoader workers
    try:
        ds = cls(str(root), **kwargs)
    except (RuntimeError, OSError, ValueError, KeyError, IndexError) as e:  # present but unreadable
        raise DataError(f"{name}: torchvision {cls.__name__} could not read {root}: {type(e).__name__}: {e}") from e
    if "fixup" in tv:
        tv["fixup"](ds)
    classes = getattr(ds, "classes", None)
    classes = [str(c) for c in classes] if classes else [str(k) for k in range(tv["n_classes"])]
    return TorchvisionLabelled(name, ds, classes, image_transform, strict)


def open_published(name: str, root: str | Path, split: str = "test", *, image_transform: Callable | None = None,
                   policy: ReadPolicy | None = None, strict: bool = False):
    """A labelled dataset: ``ds[i] -> (image, label)``; ``ds.classes`` class names (or ids) in label
    order (see the module's notes); ``ds.name`` = ``name``; ``ds.report`` a BadSampleReport;
    ``ds.layout`` the layout found (``reference_zip``, ``torchvision``, ``imagenet_synsets``,
    ``imagenet_index``, ``imagenetv2_index``, ``clip_benchmark_wds``); ``ds.templates`` the
    webdataset's templates or None.

    ``policy`` (:class:`~cloob.data.policy.ReadPolicy`): byte and pixel limits for every layout
    but GTSRB's, OxfordIIITPet's and the array datasets' (see :class:`TorchvisionLabelled`).
    """
    policy = policy or DEFAULT_POLICY
    layout, where = find_layout(name, root, split)
    if layout == "torchvision":
        return _open_torchvision(name, where, split, image_transform, strict, policy)
    if layout == "clip_benchmark_wds":
        ds = WdsLabelled(where, split, name=name, image_transform=image_transform, strict=strict, policy=policy)
    else:
        ds = _class_folder(where, image_transform, strict, policy)
        ds.templates = None
    ds.name = ds.report.name = name
    ds.layout = layout
    return ds


def open_imagenet_folder(folder: str | Path, v2: bool = False, *, image_transform: Callable | None = None,
                         policy: ReadPolicy | None = None, strict: bool = False):
    """ImageNet val class folders given directly (open_clip's ``--imagenet-val DIR``; synset ids or indices),
    or with ``v2`` an ImageNetV2 folder (its index folders, or the one variant folder holding them)."""
    folder = Path(folder)
    name = "imagenetv2" if v2 else "imagenet"
    where = _imagenetv2_dir(folder) if v2 else (folder if folder.is_dir() else None)
    if where is None:
        expected = "[<variant>/]<0..999>/*.jpeg (ImageNetV2 folders)" if v2 else "<n01440764 or 0..999>/*.JPEG"
        raise DataError(f"{name}: no class folders at {folder}: expected {folder}/{expected}; {HINT}")
    layout = "imagenetv2_index" if v2 else _folder_kind(where)
    ds = _class_folder(where, image_transform, strict, policy or DEFAULT_POLICY)
    ds.templates, ds.layout = None, layout
    ds.name = ds.report.name = name
    return ds
