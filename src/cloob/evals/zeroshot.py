"""Zero-shot classification (method.md §2).

For each class c and template k, encode ``template.format(classname)``, l2-normalise,
average over templates, l2-normalise again: that is the class weight w_c. Predict
argmax_c x·w_c for image features x (unit rows).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from cloob.evals.confusions import confusion_matrix
from cloob.evals.features import Features, _model_device, encode_labelled, encode_texts


@torch.no_grad()
def class_text_embeddings(model, tokenizer: Callable, classnames: Sequence[str], templates: Sequence[str],
                          batch_size: int = 256) -> torch.Tensor:
    """T: (C, K, d) unit rows, T[c, k] = n(encode_text(templates[k].format(classnames[c])))."""
    texts = [t.format(c) for c in classnames for t in templates]
    emb = encode_texts(model, tokenizer, texts, batch_size=batch_size)
    emb = torch.nn.functional.normalize(emb, dim=-1)
    return emb.reshape(len(classnames), len(templates), -1)


def classifier_cache_key(classnames: Sequence[str], templates: Sequence[str], identity: str) -> str:
    """sha256 (hex) of the class names, templates and the caller's name for the model's weights."""
    blob = json.dumps({"classnames": list(classnames), "templates": list(templates), "identity": identity})
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _read_cache(path: Path, key: str, n_classes: int) -> torch.Tensor | None:
    """The cached (C, d) weights, or None when absent, unreadable or written for other inputs."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        stored = load_file(str(path))
    except (OSError, SafetensorError):
        return None  # a torn or foreign file: recompute and overwrite it
    k, W = stored.get("key"), stored.get("weights")
    if k is None or W is None or bytes(k.tolist()) != bytes.fromhex(key) or W.ndim != 2 or len(W) != n_classes:
        return None
    return W


def _write_cache(path: Path, W: torch.Tensor, key: str, about: dict) -> None:
    """Write ``path`` (weights + key) and its ``.json`` sidecar, each by rename, so a reader never sees half."""
    from cloob.weights import save_safetensors

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # the key travels inside the tensor file (save_safetensors takes no metadata), so one rename publishes both
    save_safetensors({"weights": W.detach().float().cpu().contiguous(),
                      "key": torch.tensor(list(bytes.fromhex(key)), dtype=torch.uint8)}, tmp)
    os.replace(tmp, path)
    side = path.with_name(f".{path.name}.{os.getpid()}.json.tmp")
    side.write_text(json.dumps({"key": key, **about}, indent=1) + "\n", encoding="utf-8")
    os.replace(side, path.with_name(path.name + ".json"))  # for people: what the file holds; not read back


@torch.no_grad()
def zeroshot_classifier(model, tokenizer: Callable, classnames: Sequence[str], templates: Sequence[str],
                        batch_size: int = 256, *, cache_file: str | Path | None = None, identity: str = "",
                        progress: bool = False) -> torch.Tensor:
    """(C, d) float32 unit rows on the model's device: the template-ensembled class weights w_c (method.md §2).

    The C·K prompts are encoded a few whole classes at a time (``batch_size // K`` classes, at least
    one), and each class is reduced to its row at once, so memory holds one batch and the (C, d)
    result, never all C·K prompt embeddings (1,000 × 80 for ImageNet), as open_clip's
    ``build_zero_shot_classifier`` does. ``progress``: a tqdm bar over the batches.

    ``cache_file``: read the weights from it when it was written for the same class names, templates
    and ``identity`` (the caller's name for the model's weights, required with a cache), else compute
    them and write it (safetensors, with a ``.json`` sidecar saying what it holds).
    """
    from tqdm import tqdm

    if len(classnames) == 0 or len(templates) == 0:
        raise ValueError("zeroshot_classifier needs at least one class name and one template")
    if cache_file is not None and not identity:
        raise ValueError("a classifier cache needs the model's identity (else other weights would reuse it)")
    device = _model_device(model)
    path = Path(cache_file) if cache_file is not None else None
    key = classifier_cache_key(classnames, templates, identity) if path is not None else ""
    if path is not None and (W := _read_cache(path, key, len(classnames))) is not None:
        return W.to(device)
    K = len(templates)
    per = max(1, batch_size // K)
    rows = []
    for i in tqdm(range(0, len(classnames), per), total=-(-len(classnames) // per), desc="zero-shot classifier",
                  unit="batch", disable=not progress):
        chunk = classnames[i : i + per]
        emb = encode_texts(model, tokenizer, [t.format(c) for c in chunk for t in templates], batch_size=batch_size)
        emb = torch.nn.functional.normalize(emb, dim=-1).reshape(len(chunk), K, -1).mean(dim=1)
        rows.append(torch.nn.functional.normalize(emb, dim=-1))
    W = torch.cat(rows)
    if path is not None:
        _write_cache(path, W, key, {"identity": identity, "classes": len(classnames), "templates": K,
                                    "dim": int(W.shape[1])})
    return W


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
