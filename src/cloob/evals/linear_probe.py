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
    return probe_predictions(train_features, train_labels, test_features, test_labels, Cs=Cs,
                             val_fraction=val_fraction, seed=seed, standardize=standardize, max_iter=max_iter)[0]


def probe_predictions(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
                      test_labels: np.ndarray, *, Cs=C_GRID, val_fraction: float = 0.2, seed: int = 0,
                      standardize: bool = False, max_iter: int = 1000) -> tuple[dict, np.ndarray]:
    """:func:`linear_probe`'s metrics and its (N_test,) predicted labels."""
    test_labels = np.asarray(test_labels)
    clf, out = fit_probe(train_features, train_labels, Cs=Cs, val_fraction=val_fraction, seed=seed,
                         standardize=standardize, max_iter=max_iter)
    pred = clf.predict(test_features)
    out.update({"top1": float(np.mean(pred == test_labels)), "n_test": int(len(test_labels))})
    return out, pred


def fit_probe(train_features: np.ndarray, train_labels: np.ndarray, *, Cs=C_GRID, val_fraction: float = 0.2,
              seed: int = 0, standardize: bool = False, max_iter: int = 1000):
    """The probe's classifier: C chosen on a stratified validation part of the training features, then refit on
    all of them. Returns (classifier, {``C``, ``val_top1``, ``val_top1/C=<c>``, ``n_train``})."""
    train_labels = np.asarray(train_labels)
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
    out.update({"C": float(best_C), "val_top1": best_acc, "n_train": int(len(train_labels))})
    return clf, out


# ------------------------------------------------------------------ CLIP_benchmark's protocol
WD_GRID = np.logspace(-6, 2, num=97)  # CLIP_benchmark (after CLIP, appendix A.3): 97 weight decays, 1e-6 … 1e2


def _train_linear(x, y, n_classes: int, weight_decay: float, lr: float, epochs: int, batch_size: int, seed: int,
                  device: str):
    """A linear layer trained with AdamW and a cosine schedule (no warm-up), as CLIP_benchmark's ``train``.

    The order of random draws (seed, layer init, one loader shuffle per epoch) is CLIP_benchmark's, so
    the same features give the same classifier.
    """
    import math

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    model = torch.nn.Linear(x.shape[1], n_classes).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    steps = epochs * len(loader)
    for epoch in range(epochs):
        for i, (xb, yb) in enumerate(loader):
            for group in opt.param_groups:
                group["lr"] = 0.5 * (1 + math.cos(math.pi * (i + epoch * len(loader)) / steps)) * lr
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb.to(device)), yb.to(device)).backward()
            opt.step()
    return model


def _logits(model, x, device: str):
    import torch

    with torch.no_grad():
        return model(x.to(device)).float().cpu()


def clip_benchmark_linear_probe(train_x, train_y, val_x, val_y, test_x, test_y, *, lr: float = 0.1, epochs: int = 10,
                                batch_size: int = 64, seed: int = 0, device: str = "cpu", progress: bool = False) -> dict:
    """CLIP_benchmark's linear probe (``clip_benchmark.metrics.linear_probe.evaluate``, full-data case) on cached features.

    Its own function needs CUDA; this runs the same protocol anywhere: a permutation of the train
    features (seeded with ``seed``), weight decay searched on the validation split (7 coarse values
    of :data:`WD_GRID`, then a bisection around the best), the final layer trained on train + val.

    Args:
        *_x: (N, d) float features (unit rows, as CLIP_benchmark's featurizer normalises); *_y: (N,) int labels.
        lr, epochs, batch_size: CLIP_benchmark's ``--fewshot_lr`` 0.1, ``--fewshot_epochs`` 10, ``--batch_size`` 64.
    Returns:
        ``acc1``, ``acc5`` (NaN under 6 classes, as CLIP_benchmark), ``mean_per_class_recall``, ``weight_decay``.
    """
    import torch
    from tqdm import tqdm

    as_t = lambda a, dt: torch.as_tensor(np.asarray(a), dtype=dt)  # noqa: E731
    tx, ty, vx, vy = as_t(train_x, torch.float32), as_t(train_y, torch.int64), as_t(val_x, torch.float32), as_t(val_y, torch.int64)
    sx, sy = as_t(test_x, torch.float32), as_t(test_y, torch.int64)
    torch.manual_seed(seed)
    perm = torch.randperm(len(tx))
    tx, ty = tx[perm], ty[perm]
    n_classes = int(max(ty.max(), vy.max(), sy.max())) + 1
    tried: dict[int, float] = {}
    bar = tqdm(total=None, desc="linear probe: weight decay", disable=not progress)

    def val_acc(idx: int) -> float:
        if idx not in tried:
            model = _train_linear(tx, ty, n_classes, float(WD_GRID[idx]), lr, epochs, batch_size, seed, device)
            tried[idx] = float((_logits(model, vx, device).argmax(1) == vy).float().mean())
            bar.update()
        return tried[idx]

    def peak(idxs) -> int:
        best, best_acc = 0, 0.0
        for i in idxs:  # strictly better only, in the given order: CLIP_benchmark's find_peak
            if val_acc(i) > best_acc:
                best, best_acc = i, val_acc(i)
        return best

    coarse = [int(i) for i in np.flatnonzero(np.isin(WD_GRID, np.logspace(-6, 2, num=7)))]
    idx, span = peak(coarse), 8
    while span > 0:
        idx = peak([max(idx - span, 0), idx, min(idx + span, len(WD_GRID) - 1)])
        span //= 2
    bar.close()
    model = _train_linear(torch.cat([tx, vx]), torch.cat([ty, vy]), n_classes, float(WD_GRID[idx]), lr, epochs,
                          batch_size, seed, device)
    logits = _logits(model, sx, device)
    pred = logits.argmax(1)
    out = {"acc1": float((pred == sy).float().mean()), "acc5": float("nan"), "weight_decay": float(WD_GRID[idx]),
           "mean_per_class_recall": float(np.mean([(pred[sy == c] == c).float().mean() for c in sy.unique()]))}
    if sy.max() >= 5:
        top5 = logits.topk(5, dim=1).indices
        out["acc5"] = float((top5 == sy[:, None]).any(1).float().mean())
    return out
