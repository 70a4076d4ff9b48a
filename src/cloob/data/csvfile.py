"""Image–caption pairs from a CSV/TSV file in open_clip's convention.

``--csv-img-key filepath --csv-caption-key title --csv-separator "\\t"``: one row
per pair, a header naming the columns, image paths relative to the CSV file
(absolute paths are used as they are). Several rows may share an image (for
retrieval sets, see :func:`open_csv_retrieval`).
"""
from __future__ import annotations

import csv as _csv
from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset

from cloob.data.bad import BadSampleError, DataError, check_caption, handle_bad, load_image


def default_separator(path: str | Path) -> str:
    return "\t" if str(path).lower().endswith(".tsv") else ","


def finish_pair(image, caption: str, image_transform, tokenizer):
    """Apply the image transform and tokenizer (None: return caption text)."""
    x = image_transform(image) if image_transform is not None else image
    t = tokenizer([caption])[0] if tokenizer is not None else caption
    return x, t


class CsvRows:
    """The parsed rows of a CSV: (line number, image path or None, caption or None, problem)."""

    def __init__(self, path, csv_img_key="filepath", csv_caption_key="title", csv_separator=None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"CSV file {str(self.path)!r} does not exist")
        sep = csv_separator if csv_separator is not None else default_separator(path)
        base = self.path.parent
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
            self.rows: list[tuple[int, str | None, str | None]] = []
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                img = row[ii] if ii < len(row) else None
                cap = row[ci] if ci < len(row) else None
                if img is not None and not img.strip():
                    img = None
                self.rows.append((line, None if img is None else str(base / img), cap))

    def __len__(self) -> int:
        return len(self.rows)


class CsvPairs(Dataset):
    """Map-style dataset of (image, tokens) from a CSV/TSV. ``self[i]`` is a
    :class:`~cloob.data.bad.BadSample` for a bad row (or raises when strict)."""

    def __init__(self, path, *, image_transform: Callable | None, tokenizer: Callable | None,
                 strict: bool = False, csv_img_key="filepath", csv_caption_key="title", csv_separator=None):
        self.table = CsvRows(path, csv_img_key, csv_caption_key, csv_separator)
        self.name = str(path)
        self.image_transform, self.tokenizer, self.strict = image_transform, tokenizer, strict

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int):
        line, img_path, cap = self.table.rows[i]
        where = f"{self.table.path}"
        try:
            if img_path is None or cap is None:
                missing = "image" if img_path is None else "caption"
                raise BadSampleError("missing_column", where, line, f"row has no {missing} field")
            caption = check_caption(cap, where, line)
            image = load_image(img_path, row=f"{line} of {self.table.path}")
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
