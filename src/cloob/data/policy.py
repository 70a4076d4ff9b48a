"""What cloob agrees to read: paths under the data root, regular files, bounded bytes and pixels.

A data file (CSV row, tar member) names what to read, so it decides nothing about
*where*: a path it names must lie under the data root, and an archive member with
an absolute name or a ``..`` component, or one that is a link or a device, is never
read. Every refusal is a counted skip (see :mod:`cloob.data.bad`), never a silent drop.

The containment test is lexical (``os.path.normpath``): a symbolic link that the
machine's owner placed inside the root is followed, since no data file can create one.
"""
from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import PurePosixPath

MiB = 1 << 20


@dataclass(frozen=True)
class ReadPolicy:
    """Limits on what the datasets read.

    Attributes:
        data_root: directory that relative CSV paths resolve against and that every
            path must lie under; None = the CSV file's own directory.
        allow_any_path: turn the containment check off (absolute paths and ``..`` allowed).
        max_image_bytes: larger files (and archive members) are skipped before being read.
            The default leaves room for an uncompressed image at the pixel limit (3 bytes a pixel).
        max_image_pixels: width × height above which an image is skipped from its header,
            before decoding (Pillow's own limit, 89 MP, lets a 169 MP bomb through with a warning).
    """

    data_root: str | None = None
    allow_any_path: bool = False
    max_image_bytes: int = 256 * MiB
    max_image_pixels: int = 64_000_000

    def __post_init__(self):
        if self.max_image_bytes < 1 or self.max_image_pixels < 1:
            raise ValueError(f"max_image_bytes and max_image_pixels must be >= 1, got {self.max_image_bytes} "
                             f"and {self.max_image_pixels}")


DEFAULT_POLICY = ReadPolicy()


def resolve_under(path: str, root: str | os.PathLike, allow_any_path: bool = False) -> tuple[str, str | None]:
    """``(absolute normalised path, problem)``: ``path`` resolved against ``root``.

    ``problem`` is None when the path lies under ``root`` (or ``allow_any_path``), else a
    short explanation. Absolute paths are taken as they are and must lie under ``root`` too.
    """
    root = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(root, path))  # join keeps an absolute ``path`` as it is
    if allow_any_path or os.path.commonpath([root, full]) == root:
        return full, None
    return full, f"resolves to {full}, outside the data root {root} (set data_root, or allow_any_path)"


def member_problem(info: tarfile.TarInfo, policy: ReadPolicy) -> tuple[str, str] | None:
    """``(reason, detail)`` when an archive member must not be read, else None."""
    parts = PurePosixPath(info.name).parts
    if info.name.startswith("/") or ".." in parts:
        return "outside_root", f"member name {info.name!r} is absolute or contains '..'"
    if not info.isreg():
        kind = "link" if (info.issym() or info.islnk()) else "special file"
        return "not_regular_file", f"member is a {kind}; links and devices in archives are never followed"
    if info.size > policy.max_image_bytes:
        return "file_too_large", f"{info.size} bytes, more than max_image_bytes {policy.max_image_bytes}"
    return None


# ------------------------------------------------------------------ the policy's flags and keys
POLICY_KEYS = ("data_root", "allow_any_path", "max_image_bytes", "max_image_pixels")


def policy_from(source) -> ReadPolicy:
    """The :class:`ReadPolicy` of any object with the attributes :data:`POLICY_KEYS`: the flags of
    :func:`add_read_arguments` (an ``argparse.Namespace``) or a training config. An absent, None or False
    value keeps the default."""
    given = {k: getattr(source, k) for k in POLICY_KEYS if getattr(source, k, None) not in (None, False)}
    return ReadPolicy(**given)


def add_read_arguments(parser) -> None:
    """The flags of :class:`ReadPolicy` (where paths may point, byte and pixel limits) on an argparse parser."""
    g = parser.add_argument_group("what may be read")
    g.add_argument("--data-root", default=None,
                   help="relative CSV paths resolve here and every path must lie under it (default: the CSV's folder)")
    g.add_argument("--allow-any-path", action="store_true", help="read paths outside the data root too")
    g.add_argument("--max-image-bytes", type=int, default=None,
                   help=f"skip larger image files unread (default {DEFAULT_POLICY.max_image_bytes})")
    g.add_argument("--max-image-pixels", type=int, default=None,
                   help=f"skip images with more pixels before decoding (default {DEFAULT_POLICY.max_image_pixels})")
