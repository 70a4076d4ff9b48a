"""Bad input: decode images safely, turn failures into counted, reported skips.

Every loader in :mod:`cloob.data` reads samples through :func:`load_image` and
:func:`check_caption`. A failure raises :class:`BadSampleError` carrying a
*reason* (one of :data:`REASONS`), the path and the row. The dataset then either

- ``strict=False`` (default): returns a :class:`BadSample` sentinel instead of the
  sample. The collate function (run inside a DataLoader worker) separates the
  sentinels from the good samples and hands them back *with* the batch; the
  loader counts them into a :class:`BadSampleReport` in the main process, so
  counts are exact whatever ``num_workers`` is.
- ``strict=True``: raises :class:`DataError` naming the file, the row and the reason.

Convertible (valid input, converted to RGB, never skipped):
    L, LA, 1, P (palette; transparency honoured), RGBA/LA/PA (alpha composited
    on **white**), CMYK, YCbCr, LAB, HSV, I;16* (16-bit, scaled to 8 bit by
    x/257), I (32-bit int, clipped to 0..65535 and treated as 16-bit), F (clipped to 0..255).
Skipped with a counted reason:
    missing_file       the image (or shard) does not exist
    zero_size_image    a 0-byte file, or an image with width or height 0
    truncated_image    a header that parses but data that ends early
    corrupt_image      bytes that no decoder recognises, or that fail to decode
    empty_caption      caption empty or whitespace only
    non_utf8_caption   caption bytes that are not valid UTF-8
    missing_column     a CSV row with fewer fields than the header, or an empty image field;
                       a webdataset sample that lacks its image or its caption member
    extra_column       a CSV row with more fields than the header (quoted commas are one field)
    truncated_shard    a tar shard that ends in the middle of a member (or header)
    outside_root       a path that resolves outside the data root; an archive member with an
                       absolute name or a ``..`` component (see :mod:`cloob.data.policy`)
    not_regular_file   a directory, FIFO or device where an image file was expected; a link
                       or device member in an archive (never followed)
    file_too_large     a file or member over ``max_image_bytes``, skipped before it is read
    too_many_pixels    an image over ``max_image_pixels``, skipped from its header before decoding
"""
from __future__ import annotations

import io
import logging
import os
import stat
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from cloob.errors import CloobError
from cloob.data.policy import DEFAULT_POLICY, ReadPolicy

log = logging.getLogger("cloob.data")

REASONS = (
    "missing_file",
    "zero_size_image",
    "truncated_image",
    "corrupt_image",
    "empty_caption",
    "non_utf8_caption",
    "missing_column",
    "extra_column",
    "truncated_shard",
    "outside_root",
    "not_regular_file",
    "file_too_large",
    "too_many_pixels",
)
MAX_EXAMPLES = 5


class DataError(CloobError, ValueError):
    """Bad or unusable data: names the file (and row) and what was expected."""


class BadSampleError(Exception):
    """One unusable sample (internal: caught by the datasets)."""

    def __init__(self, reason: str, path: str, row: int | str | None = None, detail: str = ""):
        assert reason in REASONS, reason
        super().__init__(reason, path, row, detail)
        self.reason, self.path, self.row, self.detail = reason, str(path), row, detail

    def to_sample(self) -> "BadSample":
        return BadSample(self.reason, self.path, self.row, self.detail)


@dataclass(frozen=True)
class BadSample:
    """Sentinel a dataset returns in place of a sample it could not read."""

    reason: str
    path: str
    row: int | str | None = None
    detail: str = ""

    def where(self) -> str:
        return f"{self.path} (row {self.row})" if self.row is not None else self.path

    def message(self) -> str:
        return f"{self.reason}: {self.where()}" + (f": {self.detail}" if self.detail else "")


def handle_bad(exc: BadSampleError, strict: bool) -> BadSample:
    """Sentinel for ``exc``, or (strict) a :class:`DataError` naming file and row."""
    bad = exc.to_sample()
    if strict:
        raise DataError(f"bad sample ({bad.message()}); run without --strict to skip and count such samples")
    return bad


class BadSampleReport:
    """Counts of skipped samples per reason, the first offending paths, and the valid count.

    Mergeable across workers/processes: ``merge(other)``, ``to_dict()``/``from_dict()``.
    """

    def __init__(self, name: str = ""):
        self.name = name
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}
        self.n_ok = 0

    def add(self, bad: BadSample) -> None:
        self.counts[bad.reason] = self.counts.get(bad.reason, 0) + 1
        ex = self.examples.setdefault(bad.reason, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(bad.where() + (f": {bad.detail}" if bad.detail else ""))

    @property
    def n_bad(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: "BadSampleReport") -> "BadSampleReport":
        self.n_ok += other.n_ok
        for reason, n in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n
            ex = self.examples.setdefault(reason, [])
            ex.extend(other.examples.get(reason, [])[: MAX_EXAMPLES - len(ex)])
        return self

    def to_dict(self) -> dict:
        return {"name": self.name, "n_ok": self.n_ok, "counts": dict(self.counts),
                "examples": {k: list(v) for k, v in self.examples.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "BadSampleReport":
        r = cls(d.get("name", ""))
        r.n_ok = int(d.get("n_ok", 0))
        r.counts = {k: int(v) for k, v in d.get("counts", {}).items()}
        r.examples = {k: list(v) for k, v in d.get("examples", {}).items()}
        return r

    def format(self) -> str:
        head = f"data {self.name!r}: " if self.name else "data: "
        lines = [f"{head}{self.n_ok} valid samples, {self.n_bad} skipped"]
        for reason in sorted(self.counts, key=lambda r: (-self.counts[r], r)):
            lines.append(f"  {reason}: {self.counts[reason]}")
            lines.extend(f"    {e}" for e in self.examples.get(reason, []))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"BadSampleReport({self.to_dict()})"


# ---------------------------------------------------------------- images
def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: alpha composited on white, 16-bit scaled by 1/257."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img).astype(np.float64)
        a = np.clip(a, 0, 65535) / 257.0
        return Image.fromarray(np.round(a).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        a = np.clip(np.asarray(img, dtype=np.float64), 0, 255)
        return Image.fromarray(np.round(a).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    elif mode == "P":
        return img.convert("RGB")
    if mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img).convert("RGB")
    return img.convert("RGB")


def decode_image(data: bytes, path: str, row=None, policy: ReadPolicy = DEFAULT_POLICY) -> Image.Image:
    """Bytes -> RGB PIL image, or :class:`BadSampleError` with the reason.

    The size is read from the header and checked against ``policy.max_image_pixels``
    before any pixel is decoded, so a small file that decodes to gigabytes costs nothing.
    """
    if len(data) == 0:
        raise BadSampleError("zero_size_image", path, row, "0 bytes")
    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: cloob's own, lower limit decides below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as e:
        raise BadSampleError("corrupt_image", path, row, "not a recognised image format") from e
    except Image.DecompressionBombError as e:
        raise BadSampleError("too_many_pixels", path, row, str(e)) from e
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad sample
        raise BadSampleError("corrupt_image", path, row, f"{type(e).__name__}: {e}") from e
    if img.width == 0 or img.height == 0:
        raise BadSampleError("zero_size_image", path, row, f"{img.width}x{img.height}")
    if img.width * img.height > policy.max_image_pixels:
        raise BadSampleError("too_many_pixels", path, row, f"{img.width}x{img.height} = {img.width * img.height:,} "
                             f"pixels, more than max_image_pixels {policy.max_image_pixels:,}")
    try:
        img.load()
    except OSError as e:
        reason = "truncated_image" if "truncated" in str(e).lower() or "broken data stream" in str(e).lower() else "corrupt_image"
        raise BadSampleError(reason, path, row, str(e)) from e
    except Exception as e:  # noqa: BLE001
        raise BadSampleError("corrupt_image", path, row, f"{type(e).__name__}: {e}") from e
    return to_rgb(img)


def read_file(path: str | os.PathLike, row=None, policy: ReadPolicy = DEFAULT_POLICY) -> bytes:
    """The bytes of a regular file of at most ``policy.max_image_bytes``, or :class:`BadSampleError`.

    The type and size are checked on the open descriptor before reading (no race with a
    rename), and the read is bounded anyway, so a device such as ``/dev/zero`` or a FIFO
    costs nothing and never blocks.
    """
    path = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: opening a FIFO must not wait for a writer
    except FileNotFoundError as e:
        raise BadSampleError("missing_file", path, row, "no such file") from e
    except OSError as e:
        raise BadSampleError("missing_file", path, row, f"cannot read: {e}") from e
    limit = policy.max_image_bytes
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
            raise BadSampleError("not_regular_file", path, row, f"is {kind}")
        if st.st_size > limit:
            raise BadSampleError("file_too_large", path, row, f"{st.st_size} bytes, more than max_image_bytes {limit}")
        chunks, n = [], 0
        while n <= limit and (chunk := os.read(fd, limit + 1 - n)):
            chunks.append(chunk)
            n += len(chunk)
    except OSError as e:
        raise BadSampleError("missing_file", path, row, f"cannot read: {e}") from e
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:  # grew after the check
        raise BadSampleError("file_too_large", path, row, f"more than max_image_bytes {limit}")
    return data


def load_image(path: str | os.PathLike, row=None, policy: ReadPolicy = DEFAULT_POLICY) -> Image.Image:
    """Read and decode an image file -> RGB PIL image, or :class:`BadSampleError`."""
    return decode_image(read_file(path, row, policy), str(path), row, policy)


# ---------------------------------------------------------------- captions
def check_caption(caption: str | bytes | None, path: str, row=None) -> str:
    """Validate a caption: bytes must be UTF-8; strings must not carry undecodable
    bytes (surrogate escapes); empty/whitespace captions are bad. Returns it stripped."""
    if caption is None:
        raise BadSampleError("missing_column", path, row, "no caption")
    if isinstance(caption, bytes):
        try:
            caption = caption.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadSampleError("non_utf8_caption", path, row, str(e)) from e
    if any("\udc80" <= ch <= "\udcff" for ch in caption):
        raise BadSampleError("non_utf8_caption", path, row, "caption is not valid UTF-8")
    caption = caption.strip()
    if not caption:
        raise BadSampleError("empty_caption", path, row, "caption is empty")
    return caption
