"""Write docs/benchmarks.md from bench/results/*.json (what the benchmarks measured)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, ROOT  # noqa: E402

TARGETS = {
    "train": "cloob ≥ 1.25× open_clip's pairs/s (never slower)",
    "step": "CLOOB step time ≤ 1.10× CLIP's at batch 256 and 1,024",
    "loss": "cloob_loss fwd+bwd at N = 32,768 within 4 GiB; equal to dense (1e-5); ≤ 1.5× clip_loss at N = 4,096",
    "zeroshot": "zero-shot ≥ 0.9× the encode-only rate",
    "data": "data pipeline ≥ 3× training consumption",
}


def fmt(s: dict, digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} (min {s['min']:.{digits}f}, max {s['max']:.{digits}f}, n={s['n']})"


def section(name: str, r: dict) -> list[str]:
    m = r["machine"]
    out = [f"## {name}", "", f"Target: {TARGETS[name]}.", "", f"Command: `{r['command']}`  ",
           f"Measured {m['date']} at commit {m['commit']}: torch {m['torch']}, open_clip {m['open_clip']}, "
           f"{m['nproc']} CPUs ({m['cpu']}), {m['threads']} threads.", ""]
    if name == "train":
        out += ["| trainer | steady pairs/s (median, min, max over rounds) |", "| --- | --- |"]
        out += [f"| {k} | {fmt(v, 1)} |" for k, v in r["pairs_per_s"].items()]
        out += ["", f"**cloob / open_clip: {fmt(r['ratio_cloob_over_open_clip'])}**"]
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
    elif name == "zeroshot":
        out += ["| path | images/s |", "| --- | --- |"]
        out += [f"| {k} | {fmt(v, 1)} |" for k, v in r["images_per_s"].items()]
        out += ["", f"**zero-shot / encode-only: {fmt(r['ratio_zeroshot_over_encode'], 3)}**"]
    elif name == "data":
        out += [f"Training consumes {r['consumption_pairs_per_s']} pairs/s.", "",
                "| source | workers | pairs/s | × consumption |", "| --- | --- | --- | --- |"]
        out += [f"| {x['source']} | {x['workers']} | {x['pairs_per_s']} | {x['ratio_to_consumption']} |" for x in r["rows"]]
    return out + [""]


def main() -> int:
    lines = ["# Benchmarks", "",
             "Written by `make bench` (bench/report.py) from bench/results/*.json; every figure below was measured",
             "by the command beside it, on the machine it names. Protocol: ../shared/docs/bench.md (same work on both",
             "sides, steady state only, A/B alternated, median and min–max over rounds).", ""]
    notes = ROOT / "bench" / "NOTES.md"
    for name in TARGETS:
        path = RESULTS / f"{name}.json"
        if path.is_file():
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
