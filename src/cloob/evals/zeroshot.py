"""Zero-shot classification (method.md §2).

For each class c and template k, encode ``template.format(classname)``, l2-normalise,
average over templates, l2-normalise again: that is the class weight w_c. Predict
argmax_c x·w_c for image features x (unit rows).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from cloob.evals.confusions import confusion_matrix
from cloob.evals.features import Features, encode_labelled, encode_texts


@torch.no_grad()
def class_text_embeddings(model, tokenizer: Callable, classnames: Sequence[str], templates: Sequence[str],
                          batch_size: int = 256) -> torch.Tensor:
    """T: (C, K, d) unit rows, T[c, k] = n(encode_text(templates[k].format(classnames[c])))."""
    texts = [t.format(c) for c in classnames for t in templates]
    emb = encode_texts(model, tokenizer, texts, batch_size=batch_size)
    emb = torch.nn.functional.normalize(emb, dim=-1)
    return emb.reshape(len(classnames), len(templates), -1)


@torch.no_grad()
def zeroshot_classifier(model, tokenizer: Callable, classnames: Sequence[str], templates: Sequence[str],
                        batch_size: int = 256) -> torch.Tensor:
    """(C, d) unit rows: the template-ensembled class weights w_c (method.md §2)."""
    T = class_text_embeddings(model, tokenizer, classnames, templates, batch_size)
    return torch.nn.functional.normalize(T.mean(dim=1), dim=-1)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k highest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float(np.mean((top == labels[:, None]).any(axis=1)))


def classification_metrics(logits: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                           details: bool = False) -> dict:
    """Flat ``top1``, ``top5`` (when ≥ 5 classes), ``mean_per_class``, ``per_class/<name>``, ``n``;
    with ``details`` also ``confusion_matrix`` (m[a][b] = #(predicted a, true b)) and ``predictions``."""
    labels = np.asarray(labels, dtype=np.int64)
    pred = logits.argmax(axis=1)
    out = {"top1": float(np.mean(pred == labels)), "n": int(len(labels))}
    if logits.shape[1] >= 5:
        out["top5"] = topk_accuracy(logits, labels, 5)
    per_class = []
    for c, name in enumerate(classes):
        mask = labels == c
        acc = float(np.mean(pred[mask] == c)) if mask.any() else float("nan")
        out[f"per_class/{name}"] = acc
        if mask.any():
            per_class.append(acc)
    out["mean_per_class"] = float(np.mean(per_class)) if per_class else float("nan")
    if details:
        out["confusion_matrix"] = confusion_matrix(pred, labels, len(classes)).tolist()
        out["predictions"] = pred.tolist()
    return out


def evaluate_zeroshot(model, tokenizer: Callable, data, classnames: Sequence[str] | None = None,
                      templates: Sequence[str] = ("a photo of a {}.",), *, batch_size: int = 256,
                      num_workers: int = 0, progress: bool = False, details: bool = False) -> dict:
    """Zero-shot top-1/top-5 and per-class accuracy.

    Args:
        model: anything with ``encode_image``/``encode_text`` returning (B, d) rows (normalised here anyway).
        tokenizer: list[str] -> (B, L) token ids.
        data: a labelled dataset (``(image, label)``, ``.classes``), a :class:`Features`, or a
            tuple ``(image_features (N, d), labels (N,))``.
        classnames: names in label order (default: ``data.classes``).
        templates: format strings with one ``{}``.
        details: add ``confusion_matrix`` and ``predictions`` (lists; not scalars) to the dict.
    Returns:
        Flat dict (see :func:`classification_metrics`); scalar values unless ``details``.
    """
    if isinstance(data, tuple):
        feats, labels = np.asarray(data[0], dtype=np.float32), np.asarray(data[1])
    else:
        if not isinstance(data, Features):
            data = encode_labelled(model, data, batch_size=batch_size, num_workers=num_workers, progress=progress)
        feats, labels = data.features, data.labels
        classnames = classnames if classnames is not None else data.classes
    if not classnames:
        raise ValueError("evaluate_zeroshot needs class names (none given and the data has no .classes)")
    W = zeroshot_classifier(model, tokenizer, classnames, templates, batch_size).cpu().numpy()
    x = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    return classification_metrics(x @ W.T, labels, classnames, details=details)
