"""Write docs/benchmarks.md from bench/results/*.json (what the benchmarks measured)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, ROOT  # noqa: E402

TARGETS = {
    "train": "cloob ≥ 2× open_clip's pairs/s, each at its best CPU setting (issue 26); never slower in fp32",
    "step": "CLOOB step time ≤ 1.10× CLIP's at batch 256 and 1,024",
    "loss": "cloob_loss fwd+bwd at N = 32,768 within 4 GiB; equal to dense (1e-5); ≤ 1.5× clip_loss at N = 4,096",
    "zeroshot": "zero-shot ≥ 0.9× the encode-only rate",
    "data": "data pipeline ≥ 3× training consumption",
    "embed": "cloob embed ≥ 0.9× the encode-only rate",
    "precision": "bf16 losses within 1e-3 relative of fp32 at the first step (tests/test_train_precision.py)",
    "gpu": "bench/gpu_check.py on a CUDA device: CLIP and CLOOB, RN50, batch 256, bf16, 200 steps each",
}


def fmt(s: dict, digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} (min {s['min']:.{digits}f}, max {s['max']:.{digits}f}, n={s['n']})"


def verdict(name: str, r: dict) -> tuple[str, bool]:
    """Met / not met, computed from the measured figures (never written by hand)."""
    if name == "precision":
        worst = max(x["loss_rel_diff"] for x in r["rows"])
        return f"largest loss difference {worst:.1e} relative", worst <= 1e-3
    if name == "gpu":
        return f"measured on {r['device']}", True
    if name == "train":
        q = r["ratio_cloob_over_open_clip"]
        best = r.get("ratio_best_cloob_over_open_clip")
        if best is None:
            return (f"fp32 median {q['median']:.2f}× (min {q['min']:.2f}×); the best-setting row is not measured "
                    "yet (`python bench/bench_train.py`)"), False
        ok = best["median"] >= 2.0 and q["min"] >= 1.0
        return f"best settings median {best['median']:.2f}×; fp32 median {q['median']:.2f}× (min {q['min']:.2f}×)", ok
    if name == "step":
        qs = {k[6:]: v["ratio_cloob_over_clip"]["median"] for k, v in r.items() if k.startswith("batch_")}
        return ", ".join(f"{q:.3f}× at {b}" for b, q in qs.items()), all(q <= 1.10 for q in qs.values())
    if name == "loss":
        rows = {(x["impl"], x["n"]): x for x in r["rows"] if "seconds" in x}
        big = rows.get(("cloob", 32768))
        diffs = [x["max_abs_diff_vs_dense"] for x in rows.values() if x.get("max_abs_diff_vs_dense") is not None]
        cloob, clip = rows.get(("cloob", 4096)), rows.get(("clip", 4096))
        ratio = cloob["seconds"] / clip["seconds"] if cloob and clip else float("nan")
        parts = [f"N = 32,768 peak {big['peak_mib']:.0f} MiB" if big else "N = 32,768 not measured",
                 f"max diff vs dense {max(diffs):.1e}" if diffs else "no dense comparison",
                 f"cloob / clip at 4,096: {ratio:.2f}×"]
        checks = {"memory": bool(big) and big["peak_mib"] <= 4096, "equal": bool(diffs) and max(diffs) <= 1e-5,
                  "time": ratio <= 1.5}
        missed = [check for check, ok in checks.items() if not ok]
        return "; ".join(parts) + (f" (missed: {', '.join(missed)})" if missed else ""), not missed
    if name == "zeroshot":
        q = r["ratio_zeroshot_over_encode"]["median"]
        return f"{q:.3f}×", q >= 0.9
    if name == "data":
        best = {}
        for x in r["rows"]:
            best[x["source"]] = max(best.get(x["source"], 0), x["ratio_to_consumption"])
        text = ", ".join(f"{s}: {q:.1f}×" for s, q in best.items()) + " (best worker count)"
        return text, all(q >= 3 for q in best.values())
    if name == "embed":
        q = r["ratio_embed_over_encode"]["median"]
        return f"{q:.3f}×", q >= 0.9
    raise KeyError(name)


def gpu_section(r: dict | None) -> list[str]:
    """The GPU check: its figures when a session with a GPU ran it, else what it will measure."""
    out = ["## gpu", "", f"Target: {TARGETS['gpu']}.", "", "Command: `python bench/gpu_check.py` (exits 0 with one line "
           "where no CUDA device is present; about 3 minutes on an H200)", ""]
    if r is None:
        return out + ["**GPU: not measured yet.** No session has had a GPU. What the check prints, and what to "
                      "expect from the CPU figures above:", "",
                      "| figure | expected |", "| --- | --- |",
                      "| CLIP, CLOOB pairs/s (1 GPU, RN50, batch 256, bf16) | not measured yet |",
                      "| peak GPU memory per method | not measured yet |",
                      "| CLOOB step time / CLIP step time | ≤ 1.10 (the CPU step benchmark's target) |",
                      "| bf16 − fp32 loss at step 1 | within 1e-3 relative (the CPU precision benchmark) |",
                      "| 2 processes (torchrun, nccl) pairs/s | not measured yet |", ""]
    at = f" at commit {r['commit']}" if r.get("commit") else ""
    out += [f"Measured {r['date']}{at} on {r['device']}, torch {r['torch']}, {r['model']}, batch {r['batch']}, "
            f"{r['steps']} steps per method.", "", "| method | GPUs | pairs/s | peak memory GiB |", "| --- | --- | --- | --- |"]
    for method, v in r["one_gpu"].items():
        out.append(f"| {method} | 1 | {v['pairs_per_s']:.0f} | {v['peak_memory_gib']:.2f} |")
    for method, v in r.get("two_gpus", {}).items():
        out.append(f"| {method} | 2 | {v['pairs_per_s']:.0f} | — |")
    if "resident_batch_clip_pairs_per_s" in r:
        out.append(f"| clip, one batch kept on the GPU (no loader, no logging) | 1 | "
                   f"{r['resident_batch_clip_pairs_per_s']:.0f} | — |")
    return out + ["", f"CLOOB step time / CLIP's: {r['cloob_over_clip_step_time']:.3f}; bf16 − fp32 loss at step 1: "
                      f"{r['bf16_minus_fp32_loss_step1']:+.2e}.", ""]


def section(name: str, r: dict) -> list[str]:
    m = r["machine"]
    out = [f"## {name}", "", f"Target: {TARGETS[name]}.", "", f"Command: `{r['command'].strip()}`  ",
           f"Measured {m['date']} at commit {m['commit']}: torch {m['torch']}, open_clip {m['open_clip']}, "
           f"{m['nproc']} CPUs ({m['cpu']}), {m['threads']} threads.", ""]
    text, ok = verdict(name, r)
    out += [f"**Target {'met' if ok else 'NOT met'}:** {text}.", ""]
    if name == "train":
        out += ["| trainer | steady pairs/s (median, min, max over rounds) |", "| --- | --- |"]
        out += [f"| {k} | {fmt(v, 1)} |" for k, v in r["pairs_per_s"].items()]
        out += ["", f"**cloob / open_clip (fp32): {fmt(r['ratio_cloob_over_open_clip'])}**"]
        if "ratio_best_cloob_over_open_clip" in r:
            out += ["", f"**cloob / open_clip (best settings): {fmt(r['ratio_best_cloob_over_open_clip'])}** — "
                        f"{r['setup']['rows']['best']}"]
        if "flops" in r:
            f = r["flops"]
            out += ["", f"One fp32 step: {f['step_gflop']:.1f} GFLOP (torch.utils.flop_counter); this machine's fp32 "
                        f"matmul rate {f['matmul_peak_gflops']:.0f} GFLOP/s"
                        + (f"; cloob's fp32 step reaches {f['fraction_of_peak_fp32']:.1%} of it."
                           if "fraction_of_peak_fp32" in f else ".")]
    elif name == "step":
        out += ["| batch | CLIP s/step | CLOOB s/step | CLOOB / CLIP |", "| --- | --- | --- | --- |"]
        for key, v in r.items():
            if key.startswith("batch_"):
                s = v["seconds_per_step"]
                out.append(f"| {key[6:]} | {fmt(s['clip'], 3)} | {fmt(s['cloob'], 3)} | "
                           f"**{fmt(v['ratio_cloob_over_clip'], 3)}** |")
    elif name == "loss":
        out += ["| N | implementation | fwd+bwd s | peak MiB | max abs diff vs dense |", "| --- | --- | --- | --- | --- |"]
        for row in r["rows"]:
            if "skipped" in row or "error" in row:
                out.append(f"| {row['n']} | {row['impl']} | — | — | {row.get('skipped') or row.get('error')} |")
            else:
                diff = row["max_abs_diff_vs_dense"]
                out.append(f"| {row['n']} | {row['impl']} | {row['seconds']:.3f} | {row['peak_mib']:.0f} | "
                           f"{'—' if diff is None else f'{diff:.1e}'} |")
        if r.get("profiles"):
            out += ["", f"torch.profiler over one fwd+bwd at N = {r['profile_n']}, d = 512:", "",
                    "| loss | fwd+bwd s | matmul calls | s in matmuls (share) | s per matmul call | largest other ops "
                    "(calls, self s) |", "| --- | --- | --- | --- | --- | --- |"]
            for impl, p in r["profiles"].items():
                if "error" in p:
                    out.append(f"| {impl} | — | — | — | — | {p['error']} |")
                    continue
                other = [(k, c, t) for k, c, t in p["top_ops"] if k not in ("aten::mm", "aten::addmm", "aten::addmm_")]
                top = "; ".join(f"{k} ({c}, {t:.3f})" for k, c, t in other[:3])
                out.append(f"| {impl} | {p['total_s']:.3f} | {p['matmul_calls']} | {p['matmul_s']:.3f} "
                           f"({p['matmul_s'] / p['total_s']:.0%}) | {p['matmul_s'] / p['matmul_calls']:.3f} | {top} |")
    elif name == "zeroshot":
        out += ["| path | images/s |", "| --- | --- |"]
        out += [f"| {k} | {fmt(v, 1)} |" for k, v in r["images_per_s"].items()]
        out += ["", f"**zero-shot / encode-only: {fmt(r['ratio_zeroshot_over_encode'], 3)}**"]
        if "ratio_zeroshot_over_model_only" in r:
            out += ["", f"zero-shot / model-only (images already decoded in memory; not the target): "
                        f"{fmt(r['ratio_zeroshot_over_model_only'], 3)}"]
    elif name == "data":
        out += [f"Training consumes {r['consumption_pairs_per_s']} pairs/s.", "",
                "| source | workers | pairs/s | × consumption |", "| --- | --- | --- | --- |"]
        out += [f"| {x['source']} | {x['workers']} | {x['pairs_per_s']} | {x['ratio_to_consumption']} |" for x in r["rows"]]
    elif name == "precision":
        out += [f"First step from the same weights on the same batch of {r['batch']} scenes pairs; the towers run in "
                "the precision, the losses' logsumexp and the Hopfield softmax in fp32.", "",
                "| model | method | precision | loss (fp32) | relative loss difference | relative gradient difference |",
                "| --- | --- | --- | --- | --- | --- |"]
        out += [f"| {x['model']} | {x['method']} | {x['precision']} | {x['loss_fp32']:.5f} | {x['loss_rel_diff']:.1e} | "
                f"{x['grad_rel_diff']:.1e} |" for x in r["rows"]]
    elif name == "embed":
        out += ["| path | rows/s (image + caption) |", "| --- | --- |"]
        out += [f"| {k} | {fmt(v, 1)} |" for k, v in r["rows_per_s"].items()]
        out += ["", f"**embed / encode-only: {fmt(r['ratio_embed_over_encode'], 3)}**", "",
                f"Encoding one text query: {r['query_encode_ms']} ms (median). Index and search (k = 20, one query "
                "at a time, median):", "",
                "| collection | rows × d | backend | build + open s | search ms/query |",
                "| --- | --- | --- | --- | --- |"]
        for label, t in r["search"].items():
            for backend in ("faiss", "torch"):
                if f"{backend}_search_ms" in t:
                    build, search = t[f"{backend}_build_and_open_s"], t[f"{backend}_search_ms"]
                    out.append(f"| {label} | {t['rows']:,} × {t['dim']} | {backend} | {build} | {search} |")
    return out + [""]


def main() -> int:
    lines = ["# Benchmarks", "",
             "Written by `make bench` (bench/report.py) from bench/results/*.json; every figure below was measured",
             "by the command beside it, on the machine it names. Protocol: ../shared/docs/bench.md (same work on both",
             "sides, steady state only, A/B alternated, median and min–max over rounds).", ""]
    notes = ROOT / "bench" / "NOTES.md"
    for name in TARGETS:
        path = RESULTS / f"{name}.json"
        if name == "gpu":
            lines += gpu_section(json.loads(path.read_text()) if path.is_file() else None)
        elif path.is_file():
            lines += section(name, json.loads(path.read_text()))
        else:
            lines += [f"## {name}", "", f"Target: {TARGETS[name]}.", "", "Not measured yet (`make bench`).", ""]
    if notes.is_file():
        lines += [notes.read_text()]
    out = ROOT / "docs" / "benchmarks.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
