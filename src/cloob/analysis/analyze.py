"""``cloob analyze``: encode a dataset with one or more checkpoints, run every diagnostic,
write ``analysis.json`` and PNG figures.

Pairs: a retrieval spec (``scenes-retrieval:DIR``, a CSV with several rows per image)
pairs image i with its first caption; a pairs spec (CSV/TSV, ``scenes:DIR``, ``wds:…``)
gives (image, caption) pairs directly. The first ``max_samples`` pairs are used.

Diagnostics are computed on the l2-normalised image features x and text features y;
the saturation terms use image anchors and the checkpoint's inv_tau on the raw (not
Hopfield-retrieved) embeddings.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from cloob.analysis import diagnostics as D
from cloob.analysis import plots
from cloob.analysis.runs import read_metrics, series

HIST_BINS = 60


def encode_dataset(model, spec: str, max_samples: int = 2000, batch_size: int = 64, device="cpu",
                   workers: int = 0, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(image_features (n, d), text_features (n, d), captions) of the first ``max_samples`` pairs (a retrieval
    set gives each image's first caption); features are float32 unit rows on the CPU."""
    from torch.utils.data import IterableDataset, Subset

    from cloob.data import image_transform, make_loader, open_pairs, open_retrieval, spec_kind
    from cloob.data.bad import DataError
    from cloob.evals.features import FirstCaption, encode_pairs
    from cloob.models import get_tokenizer

    tf = image_transform(model, train=False)
    kind = spec_kind(spec)
    if kind == "retrieval":
        ds = FirstCaption(open_retrieval(spec, image_transform=tf))
    elif kind == "pairs":
        ds = open_pairs(spec, image_transform=tf, tokenizer=None)
    else:
        raise DataError(f"cannot analyze {spec!r}: expected image-text pairs (a .csv/.tsv, scenes:<DIR>, "
                        "wds:<shards>) or a retrieval set (scenes-retrieval:<DIR>)")
    if not isinstance(ds, IterableDataset):
        ds = Subset(ds, range(min(len(ds), max_samples)))
    loader = make_loader(ds, batch_size, shuffle=False, seed=0, num_workers=workers, drop_last=False)
    model = model.to(device).eval()
    try:
        x, y, captions = encode_pairs(model, get_tokenizer(model.model_name), loader, limit=max_samples,
                                      batch_size=batch_size, progress=progress, desc=f"encoding {spec}")
    except ValueError:  # not a single valid pair
        captions = []
    if len(captions) < 2:
        raise DataError(f"{spec} gave {len(captions)} valid pairs; the diagnostics need at least 2")
    return x, y, captions


def diagnose(x, y, inv_tau: float, fraction: float = 0.99, k: int = 10, chunk: int | None = None) -> tuple[dict, dict]:
    """Every diagnostic of matched image/text features ``x``, ``y`` (n, d).

    Returns (summary: JSON-ready numbers, arrays: numpy arrays for figures).
    """
    spec_x, spec_y = D.eigenvalue_spectrum(x, chunk), D.eigenvalue_spectrum(y, chunk)
    matched, unmatched = D.similarity_distributions(x, y, k=k, chunk=chunk)
    sat = D.saturation_terms(x, y, inv_tau, chunk=chunk)
    edges = np.linspace(-1, 1, HIST_BINS + 1)
    summary = {
        "n": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "inv_tau": float(inv_tau),
        "fraction": fraction,
        "image": {
            "effective_eigenvalues": D.effective_eigenvalues(spec_x, fraction),
            "ajne": D.ajne_statistic(x, chunk),
            "uniformity": D.uniformity(x, chunk=chunk),
        },
        "text": {
            "effective_eigenvalues": D.effective_eigenvalues(spec_y, fraction),
            "ajne": D.ajne_statistic(y, chunk),
            "uniformity": D.uniformity(y, chunk=chunk),
        },
        "alignment": D.alignment(x, y),
        "similarity": {
            "k": int(unmatched.shape[1]),
            "matched_mean": float(matched.mean()),
            "matched_std": float(matched.std()),
            "unmatched_mean": float(unmatched.mean()),
            "unmatched_std": float(unmatched.std()),
            "top1_unmatched_mean": float(unmatched[:, 0].mean()),
            "edges": edges.tolist(),
            "matched_hist": np.histogram(matched, edges)[0].tolist(),
            "unmatched_hist": np.histogram(unmatched, edges)[0].tolist(),
        },
        "saturation": {k_: v for k_, v in sat.items() if not isinstance(v, np.ndarray)},
        "spectrum": {"image": spec_x.tolist(), "text": spec_y.tolist()},
    }
    arrays = {"matched": matched, "unmatched": unmatched, "spectrum_image": spec_x, "spectrum_text": spec_y,
              "log_a": sat["log_a"], "log_b": sat["log_b"]}
    return summary, arrays


def run_dir_of(checkpoint: Path) -> Path:
    """``<run>/checkpoints/step-X`` -> ``<run>``."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def _labels(entries: list[dict]) -> None:
    base = [f"{e['method']} step {e['step']}" for e in entries]
    for e, b in zip(entries, base):
        e["label"] = b if base.count(b) == 1 else f"{e['run']}: {b}"


def training_panels(runs: list[tuple[str, str, list[dict]]]) -> list[tuple[str, list[dict]]]:
    """Curve panels (loss, inv_tau, log a / log b, zero-shot top-1) from ``(label, method, records)``."""
    gap = "loss above collapse (nats/direction)"
    panels: dict[str, list[dict]] = {gap: [], "loss": [], "inv_tau": [], "log a (solid) / log b (dashed)": []}
    for label, method, recs in runs:
        # methods' losses differ in scale; the gap above the collapsed value is comparable (older runs lack it)
        has_gap = bool(series(recs, "loss_gap_nats", "train")[0])
        for key, kind, title, style, suffix in (
            ("loss_gap_nats", "train", gap, "-", ""),
            *(() if has_gap else (("loss", "train", "loss", "-", " train"),)),
            ("val_loss", "eval", "loss", "--", " val"),
            ("inv_tau", "train", "inv_tau", "-", ""),
            ("log_a", "train", "log a (solid) / log b (dashed)", "-", " log a"),
            ("log_b", "train", "log a (solid) / log b (dashed)", "--", " log b"),
        ):
            steps, values = series(recs, key, kind)
            if steps:
                panels[title].append({"label": label + suffix, "method": method, "steps": steps,
                                      "values": values, "style": style})
        zs_keys = sorted({k for r in recs if r.get("kind") == "eval" for k in r
                          if k.startswith("zeroshot/") and k.endswith("/top1")})
        for key in zs_keys:
            steps, values = series(recs, key, "eval")
            panels.setdefault("zero-shot top-1", []).append(
                {"label": f"{label} {key.split('/')[1]}", "method": method, "steps": steps, "values": values})
    return [(t, s) for t, s in panels.items() if s]


def analyze(checkpoints: list[str | Path], spec: str, out: str | Path | None = None, max_samples: int = 2000,
            batch_size: int = 64, device: str = "cpu", fraction: float = 0.99, k: int = 10, workers: int = 0,
            chunk: int | None = None, progress: bool = True, model_name: str | None = None) -> dict:
    """Analyse each checkpoint on ``spec``; write ``analysis.json`` and PNGs to ``out``
    (default ``<run of the first checkpoint>/analysis``). Returns the JSON dict.

    A checkpoint is any model source of :mod:`cloob.model_source`; ``model_name`` names the
    architecture of weights files that need it."""
    from cloob.checkpoint import resolve_checkpoint
    from cloob.model_source import load_model

    if not checkpoints:
        raise ValueError("give at least one --checkpoint")
    resolved = [Path(c) if Path(c).is_file() else resolve_checkpoint(c) for c in checkpoints]
    out = Path(out) if out is not None else run_dir_of(resolved[0]) / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    entries, arrays = [], []
    for ckpt in resolved:
        model, meta = load_model(ckpt, model_name=model_name if ckpt.is_file() else None, device=device)
        x, y, _ = encode_dataset(model, spec, max_samples, batch_size, device, workers, progress)
        inv_tau = float(model.inv_tau.detach())
        summary, arr = diagnose(x, y, inv_tau, fraction, k, chunk)
        run = run_dir_of(ckpt)
        method = meta.get("method") or (meta.get("config") or {}).get("method") or "unknown"
        entries.append({"checkpoint": str(ckpt), "run": run.name, "run_dir": str(run), "method": method,
                        "model": meta.get("model"), "step": int(meta.get("step") or 0), **summary})
        arrays.append(arr)
        del model
    _labels(entries)
    result = {"dataset": spec, "fraction": fraction, "k": k, "checkpoints": entries, "figures": {}}
    if len(entries) > 1:
        first = entries[0]
        result["relative_change"] = [
            {"from": first["label"], "to": e["label"],
             "image_effective_eigenvalues": _rel(first["image"]["effective_eigenvalues"],
                                                 e["image"]["effective_eigenvalues"]),
             "text_effective_eigenvalues": _rel(first["text"]["effective_eigenvalues"],
                                                e["text"]["effective_eigenvalues"])}
            for e in entries[1:]]

    figs = result["figures"]
    sim = [{"label": e["label"], "method": e["method"], "matched": a["matched"], "unmatched": a["unmatched"]}
           for e, a in zip(entries, arrays)]
    figs["similarity_hist"] = _save(plots.similarity_hist_figure(sim), out, "similarity_hist")
    spec_entries = [{"label": e["label"], "method": e["method"], "image": a["spectrum_image"],
                     "text": a["spectrum_text"], "image_k": e["image"]["effective_eigenvalues"],
                     "text_k": e["text"]["effective_eigenvalues"]} for e, a in zip(entries, arrays)]
    figs["eigen_spectrum"] = _save(plots.spectrum_figure(spec_entries), out, "eigen_spectrum")
    if len(entries) > 1:
        changes = {}
        for rc in result["relative_change"]:
            tag = "" if len(entries) == 2 else f" → {rc['to']}"
            for side in ("image", "text"):
                changes[side + tag] = rc[f"{side}_effective_eigenvalues"]
        title = (f"relative change of effective eigenvalues\n{entries[0]['label']} → {entries[1]['label']}"
                 if len(entries) == 2 else "relative change of effective eigenvalues (from the first checkpoint)")
        fig = plots.bar_figure({k_: (v if v is not None else math.nan) for k_, v in changes.items()}, title,
                               "change (%)", percent=True)
        figs["eigen_change"] = _save(fig, out, "eigen_change")
    uni = [{"label": e["label"], "method": e["method"], "ajne_image": e["image"]["ajne"],
            "ajne_text": e["text"]["ajne"], "uniformity_image": e["image"]["uniformity"],
            "uniformity_text": e["text"]["uniformity"]} for e in entries]
    figs["uniformity"] = _save(plots.uniformity_figure(uni), out, "uniformity")
    runs, seen = [], set()
    for e in entries:
        if e["run_dir"] in seen:
            continue
        seen.add(e["run_dir"])
        recs, _ = read_metrics(Path(e["run_dir"]) / "metrics.jsonl")
        if recs:
            runs.append((e["run"], e["method"], recs))
    panels = training_panels(runs)
    if panels:
        figs["training_curves"] = _save(plots.training_curves_figure(panels), out, "training_curves")
    (out / "analysis.json").write_text(json.dumps(result, indent=1))
    result["out"] = str(out)
    return result


def _rel(before, after):
    return None if before == 0 else D.relative_change(before, after)


def _save(fig, out: Path, name: str) -> str:
    plots.save_png(fig, out / f"{name}.png")
    return f"{name}.png"
