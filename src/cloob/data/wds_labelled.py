"""CLIP_benchmark's webdataset classification layout (``D/<split>/nshards.txt``, ``D/<split>/<k>.tar`` of
image + ``.cls`` samples, ``D/classnames.txt``), read map-style for :func:`cloob.data.published.open_published`."""
from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path

from cloob.data.bad import BadSampleError, DataError, decode_image, handle_bad
from cloob.data.folder import LabelledImages
from cloob.data.policy import DEFAULT_POLICY, ReadPolicy, member_problem
from cloob.data.wds import IMAGE_EXTS, split_key


def digits(text: str) -> bool:
    """Whether ``text`` is a non-negative integer written in ASCII digits."""
    return bool(re.fullmatch(r"[0-9]+", text))


class WdsLabelled(LabelledImages):
    """CLIP_benchmark's webdataset classification split, map-style: the shards are indexed once
    (member offsets, ``.cls`` labels read), then each image is one seek + read.

    ``items[i] = ((shard number, offset, size, member name), label)`` in shard order;
    ``classes`` from ``classnames.txt`` (ids ``"0".."max"`` without it); ``templates`` the lines of
    ``zeroshot_classification_templates.txt`` (None without it). A sample without an image or a
    ``.cls``, or whose ``.cls`` is not an integer, and a member the policy refuses, are counted in
    ``report``; a shard listed by ``nshards.txt`` but absent is a :class:`DataError`.
    """

    def __init__(self, d: Path, split: str = "test", *, name: str | None = None, image_transform=None,
                 strict: bool = False, policy: ReadPolicy = DEFAULT_POLICY):
        super().__init__(name or str(d), image_transform, strict, policy)
        nshards = (d / split / "nshards.txt").read_text().strip()
        if not digits(nshards):
            raise DataError(f"{d / split / 'nshards.txt'}: expected an integer, got {nshards[:40]!r}")
        self.shards = [str(d / split / f"{k}.tar") for k in range(int(nshards))]
        self.items = []
        for k, shard in enumerate(self.shards):
            self._index_shard(k, shard)
        if not self.items:
            raise DataError(f"{self.name}: no labelled sample in {d / split} ({len(self.shards)} shards)"
                            + (f"; refused:\n{self.report.format()}" if self.report.n_bad else ""))
        names = d / "classnames.txt"
        self.classes = ([ln.strip() for ln in names.read_text().splitlines() if ln.strip()] if names.is_file()
                        else [str(k) for k in range(max(y for _, y in self.items) + 1)])
        templates = d / "zeroshot_classification_templates.txt"
        self.templates = ([ln.strip() for ln in templates.read_text().splitlines() if ln.strip()]
                          if templates.is_file() else None)
        self._fh: dict[int, object] = {}
        self._pid = None

    def _index_shard(self, k: int, shard: str) -> None:
        if not Path(shard).is_file():
            raise DataError(f"{self.name}: shard {shard} is missing (nshards.txt lists {len(self.shards)})")
        samples: dict[str, dict[str, tarfile.TarInfo]] = {}
        refused = set()
        try:
            with tarfile.open(shard, mode="r:") as tar:
                for m in tar.getmembers():
                    if m.isdir():
                        continue
                    key, ext = split_key(m.name)
                    problem = member_problem(m, self.policy)
                    if problem is not None:
                        if key not in refused:
                            refused.add(key)
                            bad = BadSampleError(problem[0], shard, m.name, problem[1])
                            self.report.add(handle_bad(bad, self.strict))
                        continue
                    samples.setdefault(key, {})[ext] = m
                labels = {key: tar.extractfile(m["cls"]).read() for key, m in samples.items()
                          if "cls" in m and key not in refused}
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"{self.name}: shard {shard} cannot be read as a tar archive ({e})") from e
        for key, members in samples.items():
            if key in refused:
                continue
            ext = next((e for e in IMAGE_EXTS if e in members), None)
            label = labels.get(key, b"").strip()
            if ext is None or not digits(label.decode("ascii", "replace")):
                what = "image (.webp/.jpg/.png)" if ext is None else "integer .cls label"
                self.report.add(handle_bad(BadSampleError("missing_column", shard, key, f"sample has no {what}"),
                                           self.strict))
                continue
            m = members[ext]
            self.items.append(((k, m.offset_data, m.size, m.name), int(label)))

    def _file(self, k: int):
        if self._pid != os.getpid():  # one set of handles per worker process
            self._fh, self._pid = {}, os.getpid()
        if k not in self._fh:
            self._fh[k] = open(self.shards[k], "rb")
        return self._fh[k]

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_fh"], d["_pid"] = {}, None
        return d

    def read(self, i: int):
        k, offset, size, member = self.items[i][0]
        f = self._file(k)
        f.seek(offset)
        data = f.read(size)
        where = f"{self.shards[k]}:{member}"
        if len(data) < size:
            raise BadSampleError("truncated_shard", where, i, "shard ends inside the member")
        return decode_image(data, where, i, self.policy)
