"""Linear probe: L2-regularised logistic regression on frozen image features (CLIP/CLOOB protocol).

The inverse regularisation strength C is chosen on a validation split carved (stratified,
seeded) from the training features, over a log-spaced sweep (:data:`C_GRID`); the model is
then refit on train+val with the chosen C and scored on the test features. Features are
used as the model gives them (unit rows), not standardised, as in CLIP's probe; pass
``standardize=True`` to z-score them with training statistics instead.
"""
from __future__ import annotations

import warnings

import numpy as np

C_GRID = tuple(float(c) for c in np.logspace(-2, 4, 7))


def stratified_split(labels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(keep, held_out) positions: ``fraction`` of each class held out, stochastically rounded (a class
    with ≥ 2 items keeps at least one on each side; a singleton goes out with probability ``fraction``)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(labels):
        pos = rng.permutation(np.flatnonzero(labels == c))
        n_held = int(np.floor(fraction * len(pos) + rng.random()))  # stochastic rounding: singletons too
        if len(pos) >= 2:
            n_held = min(max(n_held, 1), len(pos) - 1)
        held.append(pos[:n_held])
        keep.append(pos[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def fit_logistic(x: np.ndarray, y: np.ndarray, C: float, max_iter: int = 1000, standardize: bool = False):
    """A fitted classifier with ``predict(x)`` (sklearn LogisticRegression, lbfgs, L2)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = LogisticRegression(C=C, max_iter=max_iter, solver="lbfgs")
    if standardize:
        clf = make_pipeline(StandardScaler(), clf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at extreme C is expected in a sweep
        clf.fit(x, y)
    return clf


def linear_probe(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
                 test_labels: np.ndarray, *, Cs=C_GRID, val_fraction: float = 0.2, seed: int = 0,
                 standardize: bool = False, max_iter: int = 1000) -> dict:
    """Test accuracy of a logistic-regression probe with C chosen on a validation split.

    Returns flat ``top1``, ``C``, ``val_top1`` (at the chosen C), ``val_top1/C=<c>`` for the sweep, ``n_train``, ``n_test``.
    """
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    if len(np.unique(train_labels)) < 2:
        raise ValueError("linear probe needs at least two classes in the training features")
    fit_pos, val_pos = stratified_split(train_labels, val_fraction, seed)
    out = {}
    best_C, best_acc = Cs[0], -1.0
    if len(val_pos) and len(np.unique(train_labels[fit_pos])) >= 2:
        for C in Cs:
            clf = fit_logistic(train_features[fit_pos], train_labels[fit_pos], C, max_iter, standardize)
            acc = float(np.mean(clf.predict(train_features[val_pos]) == train_labels[val_pos]))
            out[f"val_top1/C={C:g}"] = acc
            if acc > best_acc:  # ties keep the smaller C (stronger regularisation)
                best_C, best_acc = C, acc
    clf = fit_logistic(train_features, train_labels, best_C, max_iter, standardize)
    pred = clf.predict(test_features)
    out.update({"top1": float(np.mean(pred == test_labels)), "C": float(best_C), "val_top1": best_acc,
                "n_train": int(len(train_labels)), "n_test": int(len(test_labels))})
    return out
