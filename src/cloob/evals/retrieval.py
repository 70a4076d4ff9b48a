"""Image↔text retrieval: Recall@1/5/10 and median rank, several captions per image.

Image→text: an image's rank is the best (smallest) rank among all of its captions.
Text→image: a caption's rank is the rank of its one image. Ranks are 1-based; ties are
broken against the query (a wrong item with the same score as the right one ranks first).
"""
from __future__ import annotations

import numpy as np

KS = (1, 5, 10)


def retrieval_ranks(image_features: np.ndarray, text_features: np.ndarray,
                    text_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image→text ranks (N_img,), text→image ranks (N_txt,)), 1-based.

    image_features: (N_img, d), text_features: (N_txt, d) (unit rows); text_image[j] = image of caption j.
    """
    text_image = np.asarray(text_image, dtype=np.int64)
    S = np.asarray(image_features, dtype=np.float64) @ np.asarray(text_features, dtype=np.float64).T
    n_img, n_txt = S.shape
    # text -> image: how many images score >= the right one (right one included)
    right = S[text_image, np.arange(n_txt)]
    t2i = (S >= right[None, :]).sum(axis=0)
    # image -> text: the best-ranked correct caption
    i2t = np.empty(n_img, dtype=np.int64)
    for i in range(n_img):
        own = text_image == i
        if not own.any():
            raise ValueError(f"image row {i} has no caption")
        best = S[i, own].max()
        i2t[i] = int((S[i, ~own] >= best).sum()) + 1
    return i2t, t2i.astype(np.int64)


def retrieval_metrics(image_features: np.ndarray, text_features: np.ndarray, text_image: np.ndarray,
                      ks=KS) -> dict:
    """Flat ``image_to_text/R@k``, ``text_to_image/R@k``, ``…/median_rank``, ``mean_recall``."""
    i2t, t2i = retrieval_ranks(image_features, text_features, text_image)
    out = {}
    for name, ranks in (("image_to_text", i2t), ("text_to_image", t2i)):
        for k in ks:
            out[f"{name}/R@{k}"] = float(np.mean(ranks <= k))
        out[f"{name}/median_rank"] = float(np.median(ranks))
    out["mean_recall"] = float(np.mean([out[f"{d}/R@{k}"] for d in ("image_to_text", "text_to_image") for k in ks]))
    out["n_images"], out["n_texts"] = int(len(i2t)), int(len(t2i))
    return out
