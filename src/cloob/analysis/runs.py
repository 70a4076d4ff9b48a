"""Reading a run directory: config.yaml, metrics.jsonl, eval/*.json, analysis/analysis.json.

A run directory ``RUN/`` holds ``config.yaml``, ``versions.json``, ``metrics.jsonl``,
``checkpoints/step-XXXXXXXX/``, ``eval/*.json`` and ``analysis/`` (written by ``cloob analyze``).
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path


from cloob.evals.compare import is_metric
from cloob.rundir import RunError, read_config

log = logging.getLogger("cloob.analysis")

# top-level numeric keys of an eval JSON that are bookkeeping, not metrics
NOT_METRICS = re.compile(r"^(step|epoch|seed|n|n_.*|num_.*|.*seconds|.*_time|time|.*_s|k|shots|batch_size)$")


@dataclass
class Run:
    path: Path
    name: str
    config: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    analysis: dict | None = None
    analysis_pngs: dict[str, Path] = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    skipped_lines: int = 0

    @property
    def method(self) -> str:
        return str(self.config.get("method", "unknown"))


def read_metrics(path: str | Path) -> tuple[list[dict], int]:
    """Records of a ``metrics.jsonl`` and the number of unreadable lines skipped.

    A truncated last line (a run still writing) is skipped; an unreadable line in the
    middle raises :class:`RunError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        return [], 0
    lines = path.read_text(encoding="utf-8").splitlines()
    records, skipped = [], 0
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines):
                skipped += 1
                log.warning("%s:%d: skipping a truncated last line", path, i)
                continue
            raise RunError(f"{path}:{i}: not a JSON object ({e.msg})") from None
        if not isinstance(rec, dict):
            raise RunError(f"{path}:{i}: expected a JSON object, got {type(rec).__name__}")
        records.append(rec)
    return records, skipped


def series(records: list[dict], key: str, kind: str | None = None) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key`` over records (of ``kind`` if given), skipping null/non-numeric values."""
    steps, values = [], []
    for r in records:
        if kind is not None and r.get("kind") != kind:
            continue
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and "step" in r:
            steps.append(int(r["step"]))
            values.append(float(v))
    return steps, values


def eval_metrics(ev: dict) -> dict[str, float]:
    """The headline metrics of one eval JSON.

    ``cloob eval`` files keep them under ``"metrics"`` (filtered by the same rule as
    ``cloob compare``: no per-class detail or bookkeeping); a flat file contributes
    every top-level finite number except bookkeeping keys.
    """
    def finite(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if isinstance(ev.get("metrics"), dict):
        return {k: float(v) for k, v in ev["metrics"].items() if finite(v) and is_metric(k)}
    return {k: float(v) for k, v in ev.items() if finite(v) and not NOT_METRICS.match(k)}


def last_train_record(run: str | Path) -> dict | None:
    """The last ``train`` record of a run's ``metrics.jsonl`` (its final logged step: ``step``,
    ``time`` = the loop's own clock, diagnostics), or None when it logged none."""
    train = [r for r in read_metrics(Path(run) / "metrics.jsonl")[0] if r.get("kind") == "train"]
    return train[-1] if train else None


def clock_segments(run: str | Path) -> list[float]:
    """The training clock's last value in each stretch of a run's ``train`` records, in order.

    The clock (``time``) runs on across a resume, so a run normally has one stretch. Runs resumed
    from a checkpoint written before cloob recorded training seconds restarted it at 0: each restart
    begins a new stretch.
    """
    ends: list[float] = []
    prev = None
    for r in read_metrics(Path(run) / "metrics.jsonl")[0]:
        t = r.get("time") if r.get("kind") == "train" else None
        if not isinstance(t, (int, float)):
            continue
        if prev is None or t < prev:
            ends.append(float(t))
        ends[-1] = float(t)
        prev = t
    return ends


def train_seconds(run: str | Path) -> float | None:
    """Wall seconds of a run's training loop, summed over resumes (None when it logged no ``train`` record)."""
    ends = clock_segments(run)
    return sum(ends) if ends else None


def cell_seconds(run: str | Path) -> float | None:
    """Wall seconds of a finished grid cell (training and evaluations), summed over resumes; None without DONE.

    ``DONE``'s ``seconds`` counts the cell's last run plus the training its checkpoint carried; the training of
    stretches whose clock restarted (see :func:`clock_segments`) is not in it and is added here. Training
    redone after a kill (steps past the last checkpoint) is counted once, in the run that kept it.
    """
    done = Path(run) / "DONE"
    if not done.is_file():
        return None
    seconds = json.loads(done.read_text()).get("seconds")
    if not isinstance(seconds, (int, float)):
        return None
    return float(seconds) + sum(clock_segments(run)[:-1])


def finished_runs_by(grid: str | Path, key: str) -> dict[str, list[Path]]:
    """Finished runs (``<grid>/*/DONE``) of a grid directory or its archive, grouped by a key of
    their ``config.yaml`` (the run's directory name where the key is unset), in name order."""
    groups: dict[str, list[Path]] = {}
    for done in sorted(Path(grid).glob("*/DONE")):
        run = done.parent
        value = read_config(run).get(key) or run.name
        groups.setdefault(str(value), []).append(run)
    return groups


def cell_metric(run: str | Path, spec: str, strict: bool = False) -> float | None:
    """One metric of a run's evaluations: ``spec`` is ``<eval file stem glob>/<key>`` (e.g.
    ``zeroshot-cifar10-*/top1``; keys may hold "/", stems do not); the first matching file in name
    order is read. None when no file matches or the key is missing or not a number.

    ``strict`` (``cloob experiment --select``): a spec without both parts, a stem matching several
    files, or a matching file without the numeric key raises :class:`RunError` instead.
    """
    stem, _, key = spec.partition("/")
    if strict and not (stem and key):
        raise RunError(f"metric {spec!r} must be <eval file stem glob>/<metric key>, "
                       "e.g. zeroshot-scenes-scene-scenes-val/top1")
    files = sorted(Path(run, "eval").glob(f"{stem}.json"))
    if strict and len(files) > 1:
        raise RunError(f"{stem!r} matches several eval files in {run}: {[f.name for f in files]}")
    if not files:
        return None
    metrics = json.loads(files[0].read_text()).get("metrics", {})
    v = metrics.get(key)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if strict:
        raise RunError(f"{files[0]} has no numeric metric {key!r}; it has {sorted(metrics)}")
    return None


def read_run(path: str | Path) -> Run:
    """Everything the report needs from one run directory (missing parts stay empty)."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path} is not a run directory")
    run = Run(path=path, name=path.name)
    cfg = path / "config.yaml"
    run.config = read_config(path)
    run.metrics, run.skipped_lines = read_metrics(path / "metrics.jsonl")
    if not cfg.is_file() and not run.metrics and not (path / "eval").is_dir():
        raise RunError(f"{path} is not a cloob run directory (no config.yaml, metrics.jsonl or eval/)")
    versions = path / "versions.json"
    if versions.is_file():
        try:
            run.versions = json.loads(versions.read_text())
        except json.JSONDecodeError:
            log.warning("%s: not valid JSON; ignored", versions)
    for f in sorted((path / "eval").glob("*.json")):
        try:
            ev = json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise RunError(f"{f}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if isinstance(ev, dict):
            ev.setdefault("evaluator", f.stem)
            ev.setdefault("dataset", "")
            ev["_file"] = f.name
            run.evals.append(ev)
    adir = path / "analysis"
    if (adir / "analysis.json").is_file():
        run.analysis = json.loads((adir / "analysis.json").read_text())
    run.analysis_pngs = {p.stem: p for p in sorted(adir.glob("*.png"))}
    return run
