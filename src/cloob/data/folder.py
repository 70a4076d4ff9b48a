"""Labelled images: ``root/<class>/*.jpg`` folders, and the same layout inside a tar.

A tar archive is indexed once (member name, data offset, size) with ``tarfile``
and read without extracting: each process opens the file lazily and reads a
member with one ``seek`` + ``read``. Class = the image's parent directory name;
classes are sorted unless given (e.g. CIFAR-10's canonical order).

Image members that must not be read (an absolute or ``..`` name, a link or a
device, more than ``max_image_bytes``) are left out of the index and counted in
``self.report`` (:mod:`cloob.data.policy`); folder entries are checked as they are read.
"""
from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Callable, Sequence

from torch.utils.data import Dataset

from cloob.data.bad import BadSampleError, BadSampleReport, DataError, decode_image, handle_bad, load_image
from cloob.data.policy import DEFAULT_POLICY, ReadPolicy, member_problem

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


class LabelledImages(Dataset):
    """(image, label) pairs; ``classes[label]`` is the human-readable class name."""

    classes: list[str]
    items: list[tuple[str, int]]

    def __init__(self, name: str, image_transform: Callable | None, strict: bool, policy: ReadPolicy):
        self.name, self.image_transform, self.strict, self.policy = name, image_transform, strict, policy
        self.report = BadSampleReport(name)  # entries refused while indexing

    def __len__(self) -> int:
        return len(self.items)

    def read(self, i: int):  # -> PIL RGB image or BadSampleError
        raise NotImplementedError

    def __getitem__(self, i: int):
        try:
            image = self.read(i)
        except BadSampleError as e:
            return handle_bad(e, self.strict)
        x = self.image_transform(image) if self.image_transform is not None else image
        return x, self.items[i][1]

    def _index(self, pairs: list[tuple[str, str]], classes: Sequence[str] | None):
        """pairs: (location, class dir name)."""
        names = sorted({c for _, c in pairs})
        if classes is None:
            classes = names
        unknown = set(names) - set(classes)
        if unknown:
            raise DataError(f"{self.name}: class folders {sorted(unknown)} not in the expected classes {list(classes)}")
        self.classes = [c.replace("_", " ") for c in classes]
        lookup = {c: i for i, c in enumerate(classes)}
        self.items = [(loc, lookup[c]) for loc, c in sorted(pairs)]
        if not self.items:
            refused = f"; refused:\n{self.report.format()}" if self.report.n_bad else ""
            raise DataError(f"{self.name}: no images found (expected <root>/<class>/*.jpg){refused}")


class ImageFolder(LabelledImages):
    def __init__(self, root, *, image_transform=None, strict=False, classes: Sequence[str] | None = None,
                 policy: ReadPolicy = DEFAULT_POLICY):
        super().__init__(str(root), image_transform, strict, policy)
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"image folder {str(root)!r} does not exist")
        pairs = []
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            for dirpath, _, files in os.walk(d):
                pairs.extend((os.path.join(dirpath, f), d.name) for f in files if _is_image(f))
        self._index(pairs, classes)

    def read(self, i):
        return load_image(self.items[i][0], row=i, policy=self.policy)


class TarFolder(LabelledImages):
    """``<anything>/<class>/<file>.jpg`` members of an uncompressed tar, read in place."""

    def __init__(self, path, *, image_transform=None, strict=False, classes: Sequence[str] | None = None,
                 prefix: str = "", policy: ReadPolicy = DEFAULT_POLICY):
        super().__init__(str(path), image_transform, strict, policy)
        self.path = str(path)
        if not Path(path).is_file():
            raise DataError(f"tar archive {self.path!r} does not exist")
        try:
            with tarfile.open(self.path, mode="r:") as tar:
                candidates = [m for m in tar.getmembers() if not m.isdir() and _is_image(m.name)
                              and m.name.startswith(prefix) and "/" in m.name]
        except tarfile.ReadError as e:
            raise DataError(f"{self.path}: not an uncompressed tar archive ({e}); "
                            "compressed archives cannot be read in place") from e
        members = []
        for m in candidates:
            problem = member_problem(m, policy)
            if problem is None:
                members.append(m)
            else:
                self.report.add(handle_bad(BadSampleError(problem[0], f"{self.path}:{m.name}", None, problem[1]),
                                           strict))
        self.offsets = {m.name: (m.offset_data, m.size) for m in members}
        self._index([(m.name, m.name.split("/")[-2]) for m in members], classes)
        self._fh = None
        self._pid = None

    def _file(self):
        if self._fh is None or self._pid != os.getpid():  # one handle per worker process
            self._fh, self._pid = open(self.path, "rb"), os.getpid()
        return self._fh

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_fh"] = d["_pid"] = None
        return d

    def read(self, i):
        name = self.items[i][0]
        offset, size = self.offsets[name]
        f = self._file()
        f.seek(offset)
        data = f.read(size)
        if len(data) < size:
            raise BadSampleError("truncated_image", f"{self.path}:{name}", i, "archive ends inside the member")
        return decode_image(data, f"{self.path}:{name}", i)


def write_folder(items, root, *, as_tar: str | None = None) -> Path:
    """Write (PIL image, class name) items as ``root/<class>/NNNNNN.png``; with
    ``as_tar`` also pack the tree into that tar file (members ``<root name>/<class>/...``)."""
    root = Path(root)
    for i, (image, cls) in enumerate(items):
        (root / cls).mkdir(parents=True, exist_ok=True)
        image.save(root / cls / f"{i:06d}.png")
    if as_tar:
        with tarfile.open(as_tar, "w") as tar:
            tar.add(root, arcname=root.name)
        return Path(as_tar)
    return root
