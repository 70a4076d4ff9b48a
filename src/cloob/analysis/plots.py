"""Figures of the diagnostics and of training curves (matplotlib, Agg; no pyplot global state).

Every ``*_figure`` function takes plain data and returns a :class:`matplotlib.figure.Figure`;
:func:`save_png` writes one, :func:`png_bytes` renders one for embedding in HTML.
Colours follow the method (``METHOD_COLOURS``), so a method looks the same in every figure.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
import numpy as np  # noqa: E402

# every method of cloob.methods has its own hue (the report's dots, curves and budget figures)
METHOD_COLOURS = {"clip": "#1f77b4", "cloob": "#d62728", "infoloob": "#2ca02c", "infonce-hopfield": "#9467bd",
                  "siglip": "#ff7f0e", "siglip-hopfield": "#8c564b"}
_FALLBACK = ["#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def method_colour(method: str | None) -> str:
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    return _FALLBACK[sum(map(ord, str(method))) % len(_FALLBACK)]


def run_shade(method: str | None, i: int, n: int) -> str:
    """The ``i``-th of ``n`` distinguishable shades of a method's colour (darker to lighter), so that
    several runs of one method stay apart in one panel while keeping the method's hue."""
    base = method_colour(method)
    if n <= 1:
        return base
    rgb = np.array([int(base[k:k + 2], 16) for k in (1, 3, 5)], dtype=float)
    t = -0.45 + 0.9 * i / (n - 1)  # < 0 mixes with black, > 0 with white
    mixed = rgb * (1 + t) if t < 0 else rgb + (255 - rgb) * t
    return "#" + "".join(f"{int(round(c)):02x}" for c in np.clip(mixed, 0, 255))


def _figure(width: float, height: float, ncols: int = 1, nrows: int = 1):
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes.ravel()


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save_png(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(fig))
    return path


# ---------------------------------------------------------------- diagnostics

def similarity_hist_figure(entries: Sequence[dict], bins: int = 50) -> Figure:
    """One panel per entry ``{"label", "method", "matched" (n,), "unmatched" (n, k) or (m,)}``:
    density histograms of matched vs top-k unmatched cosine similarity."""
    fig, axes = _figure(4.2 * len(entries), 3.2, ncols=len(entries))
    edges = np.linspace(-1, 1, bins + 1)
    for ax, e in zip(axes, entries):
        ax.hist(np.ravel(e["unmatched"]), edges, density=True, alpha=0.55, color="#888888",
                label=f"top-{np.shape(e['unmatched'])[-1]} unmatched")
        ax.hist(np.ravel(e["matched"]), edges, density=True, alpha=0.65, color=method_colour(e.get("method")),
                label="matched")
        ax.set_title(e["label"], fontsize=10)
        ax.set_xlabel("cosine similarity")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("density")
    return fig


def hist_counts_figure(entries: Sequence[dict]) -> Figure:
    """Like :func:`similarity_hist_figure` from stored histograms: entries
    ``{"label", "method", "edges", "matched" counts, "unmatched" counts}``; one line per entry,
    matched solid and unmatched dashed (for comparing runs in one panel)."""
    fig, axes = _figure(6.0, 3.4)
    ax = axes[0]
    for e in entries:
        edges = np.asarray(e["edges"])
        centres, width = (edges[1:] + edges[:-1]) / 2, np.diff(edges)
        c = method_colour(e.get("method"))
        for key, style in (("matched", "-"), ("unmatched", "--")):
            counts = np.asarray(e[key], dtype=float)
            ax.plot(centres, counts / max(counts.sum(), 1) / width, style, color=c, lw=1.4,
                    label=f"{e['label']} {key}")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_title("matched (solid) vs top-k unmatched (dashed)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return fig


def spectrum_figure(entries: Sequence[dict]) -> Figure:
    """Two panels (image, text): normalised covariance eigenvalues (log scale) per entry
    ``{"label", "method", "image": spectrum, "text": spectrum, "image_k": int, "text_k": int}``;
    a dotted vertical line marks each effective eigenvalue count."""
    fig, axes = _figure(9.0, 3.4, ncols=2)
    styles = ["-", "--", ":", "-."]
    for i, e in enumerate(entries):
        c = method_colour(e.get("method"))
        for ax, side in zip(axes, ("image", "text")):
            ev = np.asarray(e[side], dtype=float)
            ev = ev / max(ev.sum(), 1e-300)
            nonzero = np.flatnonzero(ev > 1e-10 * max(ev.max(initial=0), 1e-300))
            ev = ev[: nonzero[-1] + 1] if len(nonzero) else ev[:1]  # rank ≤ n − 1: drop the numerical zeros
            ax.semilogy(np.arange(1, len(ev) + 1), np.clip(ev, 1e-12, None), styles[i % 4], color=c, lw=1.4,
                        label=f"{e['label']} (k={e[side + '_k']})")
            ax.axvline(e[side + "_k"], color=c, ls=":", lw=0.8)
    for ax, side in zip(axes, ("image", "text")):
        ax.set_title(f"{side} embeddings: covariance spectrum", fontsize=10)
        ax.set_xlabel("eigenvalue index")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("eigenvalue / sum")
    return fig


def bar_figure(values: dict[str, float], title: str, ylabel: str, colours: Sequence[str] | None = None,
               percent: bool = False) -> Figure:
    """A labelled bar chart of ``{name: value}`` (e.g. relative change of effective eigenvalues)."""
    fig, axes = _figure(max(5.6, 1.0 * len(values) + 2), 3.3)
    ax = axes[0]
    names = list(values)
    vals = np.array([values[k] for k in names], dtype=float) * (100 if percent else 1)
    bars = ax.bar(names, vals, color=colours or "#4c72b0")
    ax.bar_label(bars, fmt="%+.1f%%" if percent else "%.3g", fontsize=8)
    ax.axhline(0, color="black", lw=0.6)
    finite = vals[np.isfinite(vals)]
    lo, hi = min(finite.min(initial=0), 0), max(finite.max(initial=0), 0)
    pad = 0.15 * ((hi - lo) or 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelsize=8)
    return fig


def uniformity_figure(entries: Sequence[dict]) -> Figure:
    """Grouped bars per entry ``{"label", "method", "ajne_image", "ajne_text", "uniformity_image",
    "uniformity_text"}``: Ajne/Prentice A (higher = less uniform) and Wang & Isola uniformity."""
    fig, axes = _figure(9.0, 3.2, ncols=2)
    x = np.arange(2)
    w = 0.8 / max(len(entries), 1)
    for i, e in enumerate(entries):
        c = method_colour(e.get("method"))
        for ax, key in zip(axes, ("ajne", "uniformity")):
            ax.bar(x + (i - (len(entries) - 1) / 2) * w, [e[f"{key}_image"], e[f"{key}_text"]], w, color=c,
                   alpha=1.0 - 0.25 * (i % 3), label=e["label"])
    axes[0].set_title("Ajne/Prentice A (higher = less uniform)", fontsize=10)
    axes[1].set_title("Wang & Isola uniformity (lower = more uniform)", fontsize=10)
    for ax in axes:
        ax.set_xticks(x, ["image", "text"])
        ax.axhline(0, color="black", lw=0.6)
        ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------- training curves

def curve_figure(series: Sequence[dict], title: str, ylabel: str, logy: bool = False) -> Figure:
    """One line per series ``{"label", "method", "steps", "values", "style" (optional)}``,
    coloured by method."""
    fig, axes = _figure(5.6, 3.3)
    ax = axes[0]
    for s in series:
        ax.plot(s["steps"], s["values"], s.get("style", "-"), color=s.get("colour") or method_colour(s.get("method")), lw=1.4,
                marker="o" if len(s["steps"]) < 12 else None, ms=3, label=s["label"])
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if series:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def training_curves_figure(panels: Sequence[tuple[str, Sequence[dict]]]) -> Figure:
    """A grid of small curve panels ``(title, series)`` (see :func:`curve_figure`)."""
    ncols = 2
    nrows = max(1, (len(panels) + 1) // 2)
    fig, axes = _figure(10.0, 3.0 * nrows, ncols=ncols, nrows=nrows)
    for ax, (title, series) in zip(axes, panels):
        for s in series:
            ax.plot(s["steps"], s["values"], s.get("style", "-"), color=s.get("colour") or method_colour(s.get("method")), lw=1.3,
                    marker="o" if len(s["steps"]) < 12 else None, ms=3, label=s["label"])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return fig
