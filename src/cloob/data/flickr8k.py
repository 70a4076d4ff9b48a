"""Flickr8k with its human captions, from ``<shared>/data/flickr8k/flickr8k.tar``, extracted once to a cache.

The archive holds ``flickr8k/images/<id>.jpg`` and ``flickr8k/{train,val,test}.csv`` (open_clip's
``filepath,title`` columns, one row per caption, paths relative to the CSV), split by photo. After
:func:`extract_flickr8k` the splits are ordinary CSV specs: ``DIR/flickr8k/train.csv`` trains (pairs),
``DIR/flickr8k/val.csv`` and ``DIR/flickr8k/test.csv`` evaluate retrieval (rows grouped by photo, five
captions each). Choose settings on ``val``; report ``test``.

The cache lives outside the repository (``$CLOOB_CACHE`` or ``~/.cache/cloob``); extraction is idempotent
(a stamp records the archive's size and mtime) and refuses members that would land outside the cache.
"""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

from cloob.cache import cache_root
from cloob.data.bad import DataError

SPLITS = ("train", "val", "test")


def default_tar() -> Path:
    from cloob.data import shared_dir

    return shared_dir() / "data" / "flickr8k" / "flickr8k.tar"


def extract_flickr8k(out: str | Path | None = None, tar: str | Path | None = None, log=print) -> Path:
    """Extract the Flickr8k archive under ``out`` (default ``<cache>/flickr8k``); returns the folder holding
    ``train.csv``, ``val.csv``, ``test.csv`` and ``images/``. A finished extraction of the same archive is
    reused.

    Raises:
        DataError: the archive is missing or not the expected layout.
    """
    tar = Path(tar) if tar else default_tar()
    out = Path(out) if out else cache_root() / "flickr8k"
    if not tar.is_file():
        raise DataError(f"Flickr8k archive not found at {tar} (shared/data/flickr8k/flickr8k.tar; see "
                        "shared/data/README.md)")
    folder = out / "flickr8k"
    stamp = out / ".extracted.json"
    st = tar.stat()
    identity = {"tar": str(tar.resolve()), "size": st.st_size, "mtime": int(st.st_mtime)}
    if stamp.is_file() and json.loads(stamp.read_text()) == identity and _complete(folder):
        return folder
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar) as archive:
            names = archive.getnames()
            missing = [f"flickr8k/{s}.csv" for s in SPLITS if f"flickr8k/{s}.csv" not in names]
            if missing:
                raise DataError(f"{tar} is not the Flickr8k archive: no {', '.join(missing)}")
            log(f"extracting {tar} ({len(names)} members) -> {out}")
            archive.extractall(out, filter="data")  # "data": no absolute paths, no links out, no devices
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"cannot extract {tar}: {e}") from e
    if not _complete(folder):
        raise DataError(f"{tar}: extracted, but {folder} lacks the CSVs or their images")
    stamp.write_text(json.dumps(identity))
    return folder


def _complete(folder: Path) -> bool:
    """The three CSVs are there and the first image each names exists."""
    for split in SPLITS:
        csv = folder / f"{split}.csv"
        if not csv.is_file():
            return False
        with open(csv, encoding="utf-8") as f:
            f.readline()
            first = f.readline().split(",", 1)[0]
        if not first or not (folder / first).is_file():
            return False
    return True
