"""``cloob report``: one self-contained HTML page for one run or a comparison of runs.

Sections: Config, Training curves, Evaluation (per-method mean ± std, bold = the best
method is significantly ahead of every other by Welch's t-test, p < 0.05), Diagnostics
(from each run's ``analysis/``), Reading (generated sentences). Figures are embedded
as base64 PNG and the CSS is inline: the file opens anywhere without network.

Metric scale: an eval metric whose values all lie in [0, 1] is shown ×100 (percent),
and differences of accuracy-like metrics (top-k, R@k, acc, recall, mAP) are in points.
"""
from __future__ import annotations

import datetime as _dt
import math
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

from cloob.analysis import plots
from cloob.analysis.reading import eval_values, last_analysis_entries, metric_scale, methods_of, reading
from cloob.analysis.runs import Run, RunError, read_run, series
from cloob.analysis.stats import ALPHA, welch_table
from cloob.evals.compare import lower_is_better
from cloob.html import CSS, esc, figure, fmt, table as _table

CONFIG_KEYS = ("method", "model", "seed", "train_data", "epochs", "batch_size", "lr", "inv_tau", "hopfield_beta",
               "learn_inv_tau", "learn_hopfield_beta", "weight_decay", "warmup_steps", "warmup_fraction",
               "clip_warm_start", "inv_tau_start", "hopfield_beta_start")


def method_dot(method: str) -> str:
    return f'<span class="dot" style="background:{plots.method_colour(method)}"></span>{esc(method)}'


# ---------------------------------------------------------------- sections

def section_config(runs: Sequence[Run]) -> str:
    keys = [k for k in CONFIG_KEYS if any(k in r.config for r in runs)]
    extra = sorted({k for r in runs for k, v in r.config.items()
                    if k not in CONFIG_KEYS and not isinstance(v, (dict, list))})
    head = ["key"] + [f"{esc(r.name)}" for r in runs]
    rows = []
    for k in keys + ["steps trained", "final train loss"] + extra:
        cells = [esc(k)]
        for r in runs:
            if k == "steps trained":
                steps, _ = series(r.metrics, "loss", "train")
                cells.append(fmt(steps[-1]) if steps else "—")
            elif k == "final train loss":
                _, vals = series(r.metrics, "loss", "train")
                cells.append(fmt(vals[-1]) if vals else "—")
            elif k == "method":
                cells.append(method_dot(r.method))
            else:
                cells.append(esc(fmt(r.config.get(k))))
        rows.append(cells)
    if not any(r.config for r in runs):
        body = '<p class="empty">No config.yaml in these runs.</p>'
    else:
        primary = _table(head, rows[: len(keys) + 2])
        rest = _table(head, rows[len(keys) + 2 :]) if extra else ""
        body = primary + (f"<details><summary>all other config keys ({len(extra)})</summary>{rest}</details>"
                          if rest else "")
    versions = [r for r in runs if r.versions]
    if versions:
        vtxt = "; ".join(f"{esc(r.name)}: " + ", ".join(f"{esc(k)} {esc(v)}" for k, v in r.versions.items()
                                                        if not isinstance(v, (dict, list)))
                         for r in versions)
        body += f'<p class="note">Versions: {vtxt}</p>'
    return body


RETRIEVAL_STYLES = (("U_x", "-"), ("U_y", "--"), ("V_x", ":"), ("V_y", "-."))


def _series(data, key: str, kind: str, style: str = "-", suffix: str = "") -> list[dict]:
    """Curves of ``key`` for every run; runs of one method get shades of its colour."""
    per_method = {m: [d[0] for d in data if d[1] == m] for _, m, _ in data}
    out = []
    for label, method, recs in data:
        steps, values = series(recs, key, kind)
        if steps:
            runs = per_method[method]
            out.append({"label": label + suffix, "method": method, "steps": steps, "values": values, "style": style,
                        "colour": plots.run_shade(method, runs.index(label), len(runs))})
    return out


def section_curves(runs: Sequence[Run]) -> str:
    data = [(f"{r.name} ({r.method})", r.method, r.metrics) for r in runs if r.metrics]
    if not data:
        return '<p class="empty">No metrics.jsonl in these runs: no training curves.</p>'
    figs = []

    def add(ser, title, ylabel, caption=None, zero=None):
        if ser:
            fig = plots.curve_figure(ser, title, ylabel)
            if zero is not None:
                fig.axes[0].axhline(0.0, color="#444444", lw=0.8, ls=":")
                fig.axes[0].annotate(zero, (0.01, 0.0), xycoords=("axes fraction", "data"), fontsize=7,
                                     color="#444444", va="bottom")
            figs.append(figure(plots.png_bytes(fig), caption or title))

    # one scale for every objective: nats per direction above the all-identical value
    add(_series(data, "loss_gap_nats", "train"), "training loss above its collapsed value",
        "nats per direction", "Training loss minus its value when all embeddings are identical (ln N for "
        "InfoNCE, 2·ln(N−1)/inv_tau for InfoLOOB, softplus(−(t+b)) + (N−1)·softplus(t+b) for the sigmoid loss), "
        "in nats per direction: comparable across methods. 0 = collapsed or chance; lower = matched pairs win.",
        zero="collapsed")
    # each objective in its own units, on its own axes
    by_method = OrderedDict()
    for label, method, recs in data:
        by_method.setdefault(method, []).append((label, method, recs))
    panels = [(f"training loss: {m}", _series(d, "loss", "train")) for m, d in by_method.items()]
    panels = [(t, ser) for t, ser in panels if ser]
    if panels:
        figs.append(figure(plots.png_bytes(plots.training_curves_figure(panels)),
                           "Training loss in each objective's own units (one panel per method)."))
    add(_series(data, "val_loss", "eval"), "validation loss", "loss")
    add(_series(data, "inv_tau", "train"), "inverse temperature inv_tau", "inv_tau")
    add(_series(data, "beta", "train"), "Hopfield beta", "beta")
    add(_series(data, "logit_bias", "train"), "sigmoid loss bias b", "b",
        "The learned bias of the sigmoid methods (SigLIP starts it at −10).")
    eff = [s for name, style in RETRIEVAL_STYLES for s in _series(data, f"eff_patterns/{name}", "train", style,
                                                                   f" {name}")]
    add(eff, "patterns averaged per retrieval", "effective patterns",
        "Effective number of stored patterns each Hopfield retrieval averages (exp of the softmax entropy, "
        "mean over states): U_x solid, U_y dashed, V_x dotted, V_y dash-dot. The batch size = every pattern "
        "averaged = collapse.")
    raw = _series(data, "cos/x", "train", "-", " image") + _series(data, "cos/y", "train", "--", " text")
    add(raw, "mean off-diagonal cosine, raw embeddings", "cosine",
        "Mean cosine between different images (solid) and different captions (dashed) of a batch; 1 = collapsed.")
    ret = [s for name, style in RETRIEVAL_STYLES for s in _series(data, f"cos/{name}", "train", style, f" {name}")]
    add(ret, "mean off-diagonal cosine, retrieved embeddings", "cosine",
        "The same for the Hopfield retrievals U_x (solid), U_y (dashed), V_x (dotted), V_y (dash-dot).")
    add(_series(data, "log_a", "train"), "log a (mean log alignment score)", "log a")
    add(_series(data, "log_b", "train"), "log b (mean log uniformity penalty)", "log b")
    zs = sorted({k for _, _, recs in data for r in recs if r.get("kind") == "eval" for k in r
                 if k.startswith("zeroshot/") and k.endswith("/top1")})
    for key in zs:
        add(_series(data, key, "eval"), f"zero-shot top-1: {key.split('/')[1]}", "top-1")
    skipped = sum(r.skipped_lines for r in runs)
    note = f'<p class="note">{skipped} truncated metrics line(s) skipped.</p>' if skipped else ""
    return f'<div class="figs">{"".join(figs)}</div>{note}'


def section_evaluation(runs: Sequence[Run], values=None) -> str:
    values = eval_values(runs) if values is None else values
    if not values:
        return '<p class="empty">No eval/*.json in these runs: nothing to tabulate.</p>'
    methods = methods_of(runs)
    out = [f'<p class="note">Mean ± std over runs (n in brackets). <b>Bold</b>: the best method is ahead of '
           f"every other by Welch's t-test, p &lt; {ALPHA}; underlined: highest mean (not significant). "
           "Metrics in [0, 1] are shown ×100.</p>"]
    groups: OrderedDict = OrderedDict()
    for (evaluator, dataset, metric), vbm in values.items():
        groups.setdefault((evaluator, dataset), []).append((metric, vbm))
    for (evaluator, dataset), items in groups.items():
        head = ["metric"] + [method_dot(m) for m in methods] + ["p (best vs next)"]
        rows = []
        for metric, vbm in items:
            scale, _ = metric_scale(vbm, metric)
            table = welch_table(vbm, higher_is_better=not lower_is_better(metric))
            cells: list = [esc(metric)]
            for r in table:
                if r["n"] == 0:
                    cells.append("—")
                    continue
                txt = f"{r['mean'] * scale:.2f}"
                txt += f" ± {r['std'] * scale:.2f}" if r["n"] >= 2 else ""
                txt += f" ({r['n']})"
                cls = "sig" if r["significant"] else ("best" if r["best"] and len(table) > 1 else "")
                cells.append((txt, cls))
            ps = [r["p_vs_best"] for r in table if not r["best"] and r["n"] > 0 and not math.isnan(r["p_vs_best"])]
            cells.append(f"{max(ps):.3g}" if ps else "—")
            rows.append(cells)
        out.append(f"<h3>{esc(evaluator)} · {esc(dataset) or '—'}</h3>" + _table(head, rows))
    return "".join(out)


def section_diagnostics(runs: Sequence[Run]) -> str:
    analysed = [r for r in runs if r.analysis]
    missing = [r.name for r in runs if not r.analysis]
    out = []
    if not analysed:
        return ('<p class="empty">No analysis/analysis.json in these runs. Run '
                "<code>cloob analyze --checkpoint RUN_DIR --dataset SPEC</code> first.</p>")
    head1 = ["run", "method", "step", "n", "eff. eig. image", "eff. eig. text", "Ajne A image", "Ajne A text",
             "W&amp;I uniformity image", "W&amp;I uniformity text", "W&amp;I alignment"]
    head2 = ["run", "method", "step", "matched cos", "top-k unmatched cos", "k", "mean log a", "mean log b",
             "InfoNCE a/(a+b)", "InfoLOOB a/b"]
    rows1, rows2, rel_rows, seen = [], [], [], set()
    for r in analysed:
        for e in r.analysis.get("checkpoints", []):
            if e.get("checkpoint") in seen:
                continue
            seen.add(e.get("checkpoint"))
            s, sat = e.get("similarity", {}), e.get("saturation", {})
            first = [esc(e.get("run", r.name)), method_dot(e.get("method", r.method)), fmt(e.get("step"))]
            rows1.append(first + [fmt(e.get("n")), fmt(e["image"]["effective_eigenvalues"]),
                                  fmt(e["text"]["effective_eigenvalues"]), fmt(e["image"]["ajne"], 3),
                                  fmt(e["text"]["ajne"], 3), fmt(e["image"]["uniformity"], 3),
                                  fmt(e["text"]["uniformity"], 3), fmt(e["alignment"], 3)])
            rows2.append(first + [fmt(s.get("matched_mean"), 3), fmt(s.get("unmatched_mean"), 3), fmt(s.get("k")),
                                  fmt(sat.get("mean_log_a"), 3), fmt(sat.get("mean_log_b"), 3),
                                  fmt(sat.get("infonce_term"), 3), fmt(sat.get("infoloob_term"), 3)])
        for rc in r.analysis.get("relative_change", []):
            pct = lambda v: "—" if v is None else f"{100 * v:+.1f} %"  # noqa: E731
            rel_rows.append([esc(r.name), esc(rc["from"]), esc(rc["to"]), pct(rc["image_effective_eigenvalues"]),
                             pct(rc["text_effective_eigenvalues"])])
    ds = sorted({str(r.analysis.get("dataset", "")) for r in analysed})
    out.append(f'<p class="note">Dataset: {esc(", ".join(ds))}. Ajne A ≈ 0.25 for uniform points, up to n/4 when '
               "all coincide; Wang–Isola uniformity: lower is more uniform; alignment: mean ‖x−y‖² of matched pairs. "
               "a/(a+b) is the InfoNCE term (saturates at 1), a/b the InfoLOOB term.</p>")
    out.append("<h3>Spectrum and uniformity</h3>" + _table(head1, rows1, left=2))
    out.append("<h3>Similarities and saturation (image anchors)</h3>" + _table(head2, rows2, left=2))
    if rel_rows:
        out.append("<h3>Relative change of the effective eigenvalue count</h3>"
                   + _table(["run", "from", "to", "image", "text"], rel_rows, left=3))
    # cross-run comparison of the similarity distributions (from the stored histograms)
    hist = []
    for r, e in last_analysis_entries(runs):
        s = e.get("similarity", {})
        if "edges" in s:
            hist.append({"label": r.name, "method": r.method, "edges": s["edges"], "matched": s["matched_hist"],
                         "unmatched": s["unmatched_hist"]})
    figs = []
    if hist:
        figs.append(figure(plots.png_bytes(plots.hist_counts_figure(hist)),
                           "similarity distributions of all runs (latest analysed checkpoint)"))
    out.append(f'<div class="figs">{"".join(figs)}</div>')
    for r in analysed:
        pngs = [(k, p) for k, p in r.analysis_pngs.items() if k != "training_curves"]
        if pngs:
            out.append(f"<h3>{esc(r.name)} ({esc(r.method)})</h3>")
            out.append('<div class="figs">' + "".join(
                figure(p.read_bytes(), f"{r.name}: {k.replace('_', ' ')}", small=True) for k, p in pngs) + "</div>")
    if missing:
        out.append(f'<p class="note">No analysis for: {esc(", ".join(missing))}.</p>')
    return "".join(out)


# ---------------------------------------------------------------- page

def build_report(runs: Sequence[Run], title: str | None = None) -> str:
    """The HTML page (a string) for ``runs``."""
    if not runs:
        raise ValueError("no runs to report")
    methods = methods_of(runs)
    title = title or ("cloob report: " + (runs[0].name if len(runs) == 1 else " vs ".join(methods)))
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    sections = [
        ("config", "Config", section_config(runs)),
        ("curves", "Training curves", section_curves(runs)),
        ("evaluation", "Evaluation", section_evaluation(runs)),
        ("diagnostics", "Diagnostics", section_diagnostics(runs)),
        ("reading", "Reading", '<ul class="reading">' + "".join(f"<li>{esc(s)}</li>" for s in reading(runs))
         + "</ul>"),
    ]
    nav = "".join(f'<a href="#{sid}">{name}</a>' for sid, name, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{name}</h2>{content}</section>' for sid, name, content in sections)
    sub = f"{len(runs)} run(s) · methods: {', '.join(methods)} · generated {now} by cloob"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><p>{esc(sub)}</p></header><nav>{nav}</nav>"
            f"<main>{body}</main></body></html>\n")


def write_report(run_dirs: Sequence[str | Path], out: str | Path = "report.html", title: str | None = None) -> Path:
    """Read ``run_dirs`` and write the report to ``out`` (atomically). Returns the path."""
    runs = []
    for d in run_dirs:
        if not Path(d).exists():
            raise RunError(f"run directory {d} does not exist")
        runs.append(read_run(d))
    names = [r.name for r in runs]
    for r in runs:  # disambiguate equal directory names (e.g. a/run and b/run)
        if names.count(r.name) > 1:
            r.name = f"{r.path.parent.name}/{r.name}"
    page = build_report(runs, title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
