"""k-shot classification: logistic regression on k labelled images per class (method.md §4).

For k in 1, 2, 4, …, 128 (capped at the smallest number of training images any class has)
and several seeds, draw exactly k images per class from the training pool only (test
features are never drawn), fit an L2 logistic regression with a fixed C (no validation
split is possible with one shot; default C = 1 on unit-norm features, which makes the
classifier close to nearest-class-mean for small k) and score on the test features. The
k = 0 row is the zero-shot accuracy when given. Reported: mean ± std over the draws.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cloob.evals.figures import save_figure
from cloob.evals.linear_probe import fit_logistic

KS = tuple(2**i for i in range(8))


def sample_k_shot(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Positions (sorted) of exactly min(k, n_c) items of every class c in ``labels``."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = [rng.choice(np.flatnonzero(labels == c), size=min(k, int(np.sum(labels == c))), replace=False)
           for c in np.unique(labels)]
    return np.sort(np.concatenate(out))


def effective_ks(labels: np.ndarray, ks=KS) -> list[int]:
    """``ks`` capped at the smallest class size, duplicates removed (order kept)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    n_min = int(counts[counts > 0].min()) if (counts > 0).any() else 0
    out = []
    for k in ks:
        k = min(int(k), n_min)
        if k >= 1 and k not in out:
            out.append(k)
    return out


def fewshot(train_features, train_labels, test_features, test_labels, *, ks=KS, seeds: int = 5, C: float = 1.0,
            zeroshot_top1: float | None = None, max_iter: int = 1000) -> dict:
    """Flat ``k=<k>/mean``, ``k=<k>/std``, ``k=<k>/n_draws`` (k = 0 from ``zeroshot_top1``) plus ``ks``.

    Also returns ``draws``: {k: list of per-seed accuracies} (not a scalar)."""
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    out: dict = {}
    draws: dict[int, list[float]] = {}
    if zeroshot_top1 is not None:
        out.update({"k=0/mean": float(zeroshot_top1), "k=0/std": 0.0, "k=0/n_draws": 1})
        draws[0] = [float(zeroshot_top1)]
    ks = effective_ks(train_labels, ks)
    for k in ks:
        accs = []
        for seed in range(seeds):
            pos = sample_k_shot(train_labels, k, seed)
            clf = fit_logistic(train_features[pos], train_labels[pos], C, max_iter)
            accs.append(float(np.mean(clf.predict(test_features) == test_labels)))
        draws[k] = accs
        out.update({f"k={k}/mean": float(np.mean(accs)), f"k={k}/std": float(np.std(accs, ddof=1) if len(accs) > 1 else 0.0),
                    f"k={k}/n_draws": len(accs)})
    out["ks"] = ([0] if zeroshot_top1 is not None else []) + ks
    out["draws"] = {str(k): v for k, v in draws.items()}
    return out


def plot_fewshot(result: dict, path: str | Path, title: str = "") -> Path:
    """Accuracy vs k (log2 x-axis) with ± std error bars; k = 0 (zero-shot) as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [k for k in result["ks"] if k > 0]
    mean = [result[f"k={k}/mean"] for k in ks]
    std = [result[f"k={k}/std"] for k in ks]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(ks, mean, yerr=std, marker="o", capsize=3, label="k-shot logistic regression")
    if "k=0/mean" in result:
        ax.axhline(result["k=0/mean"], ls="--", color="gray", label="zero-shot (k = 0)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("shots per class k")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
