"""Confusion matrix, most confused class pairs (method.md §4) and a grid of example mistakes.

Convention (method.md §4): ``m[a, b]`` = number of test images predicted ``a`` whose true
class is ``b``; ``n_b`` = number of images of true class ``b`` (column sums of ``m``).
IoU(a, b) = (m_ab + m_ba) / (n_a + n_b).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cloob.evals.figures import save_figure


def confusion_matrix(predicted: np.ndarray, true: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts, m[a, b] = #(predicted a, true b)."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(predicted, dtype=np.int64), np.asarray(true, dtype=np.int64)), 1)
    return m


def confused_pairs(m: np.ndarray, counts: np.ndarray | None = None, top: int = 10,
                   classes: list[str] | None = None) -> list[dict]:
    """The ``top`` unordered pairs a != b by IoU(a, b) = (m_ab + m_ba)/(n_a + n_b), highest first.

    counts: images per true class (default: column sums of ``m``). Pairs with no confusion are left out.
    """
    m = np.asarray(m)
    n = m.sum(axis=0) if counts is None else np.asarray(counts)
    out = []
    for a in range(len(m)):
        for b in range(a + 1, len(m)):
            confused = int(m[a, b] + m[b, a])
            if confused == 0 or n[a] + n[b] == 0:
                continue
            out.append({"a": a, "b": b, "iou": confused / float(n[a] + n[b]), "m_ab": int(m[a, b]),
                        "m_ba": int(m[b, a]), "n_a": int(n[a]), "n_b": int(n[b])})
    out.sort(key=lambda d: (-d["iou"], d["a"], d["b"]))
    out = out[:top]
    if classes is not None:
        for d in out:
            d["class_a"], d["class_b"] = classes[d["a"]], classes[d["b"]]
    return out


def evaluate_confusions(predicted: np.ndarray, true: np.ndarray, classes: list[str], top: int = 10) -> dict:
    """Flat metrics ``top1``, ``n_mistakes``, ``pair<i>/iou`` … plus ``pairs`` (list) and ``confusion_matrix``."""
    m = confusion_matrix(predicted, true, len(classes))
    pairs = confused_pairs(m, top=top, classes=list(classes))
    out = {"top1": float(np.mean(np.asarray(predicted) == np.asarray(true))),
           "n_mistakes": int(np.sum(np.asarray(predicted) != np.asarray(true)))}
    for i, p in enumerate(pairs, 1):
        out[f"pair{i}/iou"] = p["iou"]
    out["pairs"] = pairs
    out["confusion_matrix"] = m.tolist()
    return out


def denormalize(image, mean, std) -> np.ndarray:
    """(3, H, W) normalised tensor -> (H, W, 3) uint8 for display."""
    x = np.asarray(image, dtype=np.float32)
    x = x * np.asarray(std, dtype=np.float32)[:, None, None] + np.asarray(mean, dtype=np.float32)[:, None, None]
    return (np.clip(x, 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8)


def mistakes_grid(dataset, indices, true, predicted, classes, path: str | Path, *, mean, std,
                  max_images: int = 25, cols: int = 5) -> Path:
    """PNG grid of example mistakes: each cell the (de-normalised) image, true and predicted class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wrong = [j for j in range(len(true)) if true[j] != predicted[j]][:max_images]
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, j in zip(axes.flat, wrong):
        sample = dataset[int(indices[j])]
        ax.imshow(denormalize(sample[0], mean, std))
        ax.set_title(f"true: {classes[true[j]]}\npred: {classes[predicted[j]]}", fontsize=7)
    if not wrong:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    return save_figure(fig, path)
