"""Image–caption pairs from a CSV/TSV file in open_clip's convention.

``--csv-img-key filepath --csv-caption-key title --csv-separator "\\t"``: one row
per pair, a header naming the columns, image paths relative to the CSV file (or to
``data_root`` when given). Every path must lie under that root, absolute ones too
(:mod:`cloob.data.policy`; ``allow_any_path`` turns the check off). Several rows
may share an image (for retrieval sets, see :class:`cloob.data.retrieval.CsvRetrieval`).
"""
from __future__ import annotations

import csv as _csv
from pathlib import Path
from typing import Callable, NamedTuple

from torch.utils.data import Dataset

from cloob.data.bad import BadSampleError, DataError, check_caption, handle_bad, load_image
from cloob.data.policy import DEFAULT_POLICY, ReadPolicy, resolve_under


def default_separator(path: str | Path) -> str:
    return "\t" if str(path).lower().endswith(".tsv") else ","


def finish_pair(image, caption: str, image_transform, tokenizer):
    """Apply the image transform and tokenizer (None: return caption text)."""
    x = image_transform(image) if image_transform is not None else image
    t = tokenizer([caption])[0] if tokenizer is not None else caption
    return x, t


class CsvRow(NamedTuple):
    """One data row: its line number, the resolved image path and the caption (None when the
    field is missing), and ``problem = (reason, detail)`` when the row is malformed."""

    line: int
    image: str | None
    caption: str | None
    problem: tuple[str, str] | None = None

    def check(self, where: str) -> None:
        """Raise the row's :class:`BadSampleError` (malformed row, missing field, path outside the root)."""
        if self.problem is not None:
            raise BadSampleError(self.problem[0], where, self.line, self.problem[1])
        if self.image is None or self.caption is None:
            missing = "image" if self.image is None else "caption"
            raise BadSampleError("missing_column", where, self.line, f"row has no {missing} field")


class CsvRows:
    """The parsed rows of a CSV (:class:`CsvRow`), paths resolved under the data root."""

    def __init__(self, path, csv_img_key="filepath", csv_caption_key="title", csv_separator=None,
                 policy: ReadPolicy = DEFAULT_POLICY):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"CSV file {str(self.path)!r} does not exist")
        sep = csv_separator if csv_separator is not None else default_separator(path)
        root = policy.data_root if policy.data_root is not None else self.path.parent
        # surrogateescape keeps undecodable bytes so a bad caption is one bad row, not a bad file
        with open(self.path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            reader = _csv.reader(f, delimiter=sep)
            header = next(reader, None)
            if header is None:
                raise DataError(f"CSV file {str(self.path)!r} is empty (expected a header row)")
            header = [h.strip().lstrip("\ufeff") for h in header]
            for key, what in ((csv_img_key, "--csv-img-key"), (csv_caption_key, "--csv-caption-key")):
                if key not in header:
                    raise DataError(f"{self.path}: header {header} has no column {key!r} ({what}); "
                                    f"separator was {sep!r}")
            ii, ci = header.index(csv_img_key), header.index(csv_caption_key)
            self.rows: list[CsvRow] = []
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if len(row) > len(header):
                    self.rows.append(CsvRow(line, None, None, (
                        "extra_column", f"{len(row)} fields under a header of {len(header)}; "
                                        "quote a field that contains the separator")))
                    continue
                img = row[ii] if ii < len(row) else None
                cap = row[ci] if ci < len(row) else None
                if img is None or not img.strip():
                    self.rows.append(CsvRow(line, None, cap))
                    continue
                full, outside = resolve_under(img, root, policy.allow_any_path)
                self.rows.append(CsvRow(line, full, cap, None if outside is None else ("outside_root", outside)))

    def __len__(self) -> int:
        return len(self.rows)


class CsvPairs(Dataset):
    """Map-style dataset of (image, tokens) from a CSV/TSV. ``self[i]`` is a
    :class:`~cloob.data.bad.BadSample` for a bad row (or raises when strict)."""

    def __init__(self, path, *, image_transform: Callable | None, tokenizer: Callable | None,
                 strict: bool = False, csv_img_key="filepath", csv_caption_key="title", csv_separator=None,
                 policy: ReadPolicy = DEFAULT_POLICY):
        self.table = CsvRows(path, csv_img_key, csv_caption_key, csv_separator, policy)
        self.name = str(path)
        self.image_transform, self.tokenizer, self.strict, self.policy = image_transform, tokenizer, strict, policy

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int):
        row = self.table.rows[i]
        where = f"{self.table.path}"
        try:
            row.check(where)
            caption = check_caption(row.caption, where, row.line)
            image = load_image(row.image, row=f"{row.line} of {self.table.path}", policy=self.policy)
        except BadSampleError as e:
            return handle_bad(e, self.strict)
        return finish_pair(image, caption, self.image_transform, self.tokenizer)


def write_csv(pairs, path, *, image_dir: str = "images", csv_img_key="filepath", csv_caption_key="title",
              csv_separator=None) -> Path:
    """Write (PIL image, caption) pairs as PNGs under ``image_dir`` plus a CSV/TSV
    with paths relative to it. Returns the CSV path."""
    path = Path(path)
    sep = csv_separator if csv_separator is not None else default_separator(path)
    (path.parent / image_dir).mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = _csv.writer(f, delimiter=sep)
        w.writerow([csv_img_key, csv_caption_key])
        for i, (image, caption) in enumerate(pairs):
            rel = f"{image_dir}/{i:07d}.png"
            image.save(path.parent / rel)
            w.writerow([rel, caption])
    return path
