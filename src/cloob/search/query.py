"""``cloob search``: encode a text and/or image query and rank the rows of an embedding directory.

A query of a text and an image together is the normalised sum of their unit embeddings (as
clip-retrieval combines them). Hits are distinct images by default: a source with several
captions (retrieval sets, CSVs with several rows per image) has several rows, and only the
best-scoring row of each image is kept.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cloob.search.store import Store


@dataclass
class Hit:
    """One ranked result."""

    rank: int
    row: int
    score: float
    source: str
    key: str
    caption: str
    label: str

    def where(self) -> str:
        return f"{self.source}:{self.key}" if self.key else self.source

    def to_dict(self) -> dict:
        return asdict(self)


def query_vector(encoder, text: str | None = None, image=None) -> np.ndarray:
    """(d,) float32 unit query: the text's embedding, the image's (a PIL RGB image), or their normalised sum."""
    parts = []
    if text is not None:
        if not text.strip():
            raise ValueError("the text query is empty")
        parts.append(encoder.encode_texts([text])[0])
    if image is not None:
        parts.append(encoder.encode_pil([image])[0])
    if not parts:
        raise ValueError("give a text query, an image query or both")
    q = np.sum(parts, axis=0)
    return (q / max(float(np.linalg.norm(q)), 1e-12)).astype(np.float32)


def ranked(store: Store, index, query: np.ndarray, k: int, distinct: bool = True) -> list[Hit]:
    """The top ``k`` hits of one (d,) query; with ``distinct`` one hit per image (its best row)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    per_image = int(store.manifest.get("max_rows_per_image", 1)) if distinct else 1
    # k distinct images are among the k * (rows per image) best rows
    scores, rows = index.search(query[None, :], k * per_image)
    hits, seen = [], set()
    for s, r in zip(scores[0].tolist(), rows[0].tolist()):
        if r < 0:  # faiss pads with -1 when fewer rows exist
            continue
        meta = store.rows[r]
        ident = (meta["source"], meta["key"])
        if distinct and ident in seen:
            continue
        seen.add(ident)
        hits.append(Hit(len(hits) + 1, r, float(s), meta["source"], meta["key"], meta["caption"], meta["label"]))
        if len(hits) == k:
            break
    return hits


def format_hits(hits: list[Hit], width: int = 60) -> str:
    """A plain-text table: rank, score, row, caption (or label), source."""
    lines = [f"{'#':>3}  {'score':>7}  {'row':>7}  {'caption':<{width}}  source"]
    for h in hits:
        text = h.caption or (f"[{h.label}]" if h.label else "")
        text = text if len(text) <= width else text[: width - 1] + "…"
        lines.append(f"{h.rank:>3}  {h.score:>7.4f}  {h.row:>7}  {text:<{width}}  {h.where()}")
    return "\n".join(lines)
