"""k-nearest-neighbour classification on embeddings (cosine similarity).

Votes are weighted by exp(s / temperature) of the cosine similarity s (the weighted kNN
of Wu et al. 2018 / DINO, temperature 0.07) with ``weighting="similarity"`` (default), or
counted equally with ``weighting="majority"`` (ties go to the lower class index).
"""
from __future__ import annotations

import numpy as np


def _unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_scores(train_features, train_labels, test_features, n_classes: int, k: int = 20,
               weighting: str = "similarity", temperature: float = 0.07, chunk: int = 1024) -> np.ndarray:
    """(N_test, C) class votes from the k most similar training features."""
    if weighting not in ("similarity", "majority"):
        raise ValueError(f"weighting must be 'similarity' or 'majority', got {weighting!r}")
    tr, te = _unit(train_features), _unit(test_features)
    y = np.asarray(train_labels, dtype=np.int64)
    k = min(k, len(tr))
    scores = np.zeros((len(te), n_classes), dtype=np.float64)
    for s in range(0, len(te), chunk):
        S = te[s : s + chunk] @ tr.T
        nn = np.argpartition(-S, k - 1, axis=1)[:, :k]
        sims = np.take_along_axis(S, nn, axis=1)
        w = np.exp(sims / temperature) if weighting == "similarity" else np.ones_like(sims)
        rows = np.repeat(np.arange(len(nn)), k)
        np.add.at(scores[s : s + chunk], (rows, y[nn].ravel()), w.ravel())
    return scores


def knn_classify(train_features, train_labels, test_features, test_labels, *, k: int = 20,
                 weighting: str = "similarity", temperature: float = 0.07, n_classes: int | None = None) -> dict:
    """Flat ``top1`` (and ``top5`` with ≥ 5 classes), ``k``, ``n_train``, ``n_test``."""
    from cloob.evals.zeroshot import topk_accuracy

    test_labels = np.asarray(test_labels, dtype=np.int64)
    C = n_classes or int(max(np.max(train_labels), np.max(test_labels)) + 1)
    scores = knn_scores(train_features, train_labels, test_features, C, k, weighting, temperature)
    out = {"top1": float(np.mean(scores.argmax(1) == test_labels))}
    if C >= 5:
        out["top5"] = topk_accuracy(scores, test_labels, 5)
    out.update({"k": int(k), "n_train": int(len(train_labels)), "n_test": int(len(test_labels))})
    return out
