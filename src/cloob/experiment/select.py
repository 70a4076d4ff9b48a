"""``cloob experiment --select METRIC``: the tuning summary of a grid -> ``<out>/best.json``.

METRIC is ``<eval file stem glob>/<metric key>`` (the key may hold "/", the stem does not: it is read by
:func:`cloob.analysis.runs.cell_metric`), several joined by ``,`` are averaged, a ``min:`` prefix selects the
lowest. Each (method, hyper-parameters) is averaged over seeds and the best per method is kept.
"""
from __future__ import annotations

import json
from pathlib import Path

from cloob.experiment.grid import NOT_HYPER, Cell, GridError


def metric_value(cell_dir: Path, part: str) -> float | None:
    """One metric of a cell (None when no eval file matches yet); a malformed spec, a stem matching several
    files or a file without the numeric key is a :class:`GridError`."""
    from cloob.analysis.runs import cell_metric
    from cloob.rundir import RunError

    try:
        return cell_metric(cell_dir, part, strict=True)
    except RunError as e:
        raise GridError(f"--select: {e}") from None


def select(g: dict, cells: list[Cell], metric: str) -> Path:
    """Best hyper-parameters per method (mean over seeds) -> <out>/best.json; prints a per_method block."""
    lower = metric.startswith("min:")
    parts = [p.strip() for p in metric.removeprefix("min:").split(",") if p.strip()]
    groups: dict[tuple, dict] = {}
    sweep = []
    for c in cells:
        values = [metric_value(c.dir, p) for p in parts]
        if any(v is None for v in values):
            continue
        value = sum(values) / len(values)
        method = c.config.get("method", "clip")
        params = {a: v for a, v in c.axes.items() if a not in NOT_HYPER}
        sweep.append({"cell": c.name, "method": method, "params": params, "value": value})
        grp = groups.setdefault((method, json.dumps(params, sort_keys=True)), {"params": params, "values": []})
        grp["values"].append(value)
    if not sweep:
        raise GridError(f"--select: no cell of {g['name']} has eval results for {metric!r} yet (run the grid first)")
    best: dict[str, dict] = {}
    for (method, _), grp in groups.items():
        mean = sum(grp["values"]) / len(grp["values"])
        if method not in best or (mean < best[method]["value"] if lower else mean > best[method]["value"]):
            best[method] = {**grp["params"], "value": mean, "n": len(grp["values"])}
    out = Path(g["out"]) / "best.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"metric": metric, "mode": "min" if lower else "max", "best": best,
                               "sweep": sweep}, indent=1))
    print(f"best per method by {'lowest' if lower else 'highest'} {metric} (mean over seeds):")
    for method, b in best.items():
        print(f"  {method:18s} {b['value']:.4f}  ({b['n']} seed(s))")
    print("per_method:   # copy into the final grid")
    for method, b in best.items():
        params = {k: v for k, v in b.items() if k not in ("value", "n")}
        print(f"  {method}: {json.dumps(params)}")
    print(f"wrote {out}")
    return out
