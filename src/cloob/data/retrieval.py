"""Retrieval sets: images, each with a list of captions (``open_retrieval``).

A retrieval dataset ``ds`` has ``ds[i] -> (image, i)``, ``ds.captions[i]`` (list of
str for image i), and the flat views ``texts(ds)`` and ``text_image(ds)`` (caption
j belongs to image ``text_image[j]``).
"""
from __future__ import annotations

from collections import OrderedDict

from torch.utils.data import Dataset

from cloob.data.bad import BadSampleError, DataError, check_caption, handle_bad, load_image
from cloob.data.csvfile import CsvRows
from cloob.data.policy import DEFAULT_POLICY, ReadPolicy


def texts(ds) -> list[str]:
    return [c for caps in ds.captions for c in caps]


def text_image(ds) -> list[int]:
    return [i for i, caps in enumerate(ds.captions) for _ in caps]


class CsvRetrieval(Dataset):
    """CSV/TSV rows grouped by image path (first appearance order); rows with a bad
    caption or missing field are dropped from the caption lists and counted in
    ``self.report`` (an image left with no caption is dropped too)."""

    def __init__(self, path, *, image_transform=None, strict=False, csv_img_key="filepath",
                 csv_caption_key="title", csv_separator=None, policy: ReadPolicy = DEFAULT_POLICY):
        from cloob.data.bad import BadSampleReport

        table = CsvRows(path, csv_img_key, csv_caption_key, csv_separator, policy)
        self.name, self.image_transform, self.strict, self.policy = str(path), image_transform, strict, policy
        self.report = BadSampleReport(self.name)
        groups: OrderedDict[str, list[str]] = OrderedDict()
        for row in table.rows:
            try:
                row.check(str(path))
                groups.setdefault(row.image, []).append(check_caption(row.caption, str(path), row.line))
            except BadSampleError as e:
                self.report.add(handle_bad(e, strict))
        self.paths = list(groups)
        self.captions = [groups[p] for p in self.paths]
        if not self.paths:
            raise DataError(f"retrieval CSV {path} has no usable row:\n{self.report.format()}")

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            img = load_image(self.paths[i], row=i, policy=self.policy)
        except BadSampleError as e:
            return handle_bad(e, self.strict)
        return (self.image_transform(img) if self.image_transform else img), i
