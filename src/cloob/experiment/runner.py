"""Running a grid: each cell (train, evaluate, analyze; DONE), the archive, resuming, then compare and report.

How a cell runs: in a worker process of its own (``multiprocessing`` spawn, one per cell), which sets the
cell's thread count (``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` and ``torch.set_num_threads``), trains in a
subprocess (``python -m cloob.cli train --config <cell>/cell.yaml``), runs every evaluation in-process through
:mod:`cloob.evals.registry` (the same parse, result files and printed tables as ``cloob eval``) and, when
the grid has ``analyze``, ``cloob analyze`` in a subprocess. The parent keeps one thread per running cell,
each waiting on its worker: ``parallel: K`` runs K workers at once, each with its own threads, and with
K > 1 each worker's output goes to ``<cell>/train.log`` and ``<cell>/eval.log`` (its own file descriptors,
so neither the thread counts nor the logs of two cells mix).
"""
from __future__ import annotations

import fnmatch
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import yaml

from cloob.archive import archive_cell, archived_done, restore_cell
from cloob.errors import REPORTED, first_line
from cloob.experiment.grid import PREPARE, Cell, GridError, expand, load_grid
from cloob.experiment.select import select


def cell_threads(cell: Cell, threads: int) -> int:
    """The cell's ``threads`` config key when set (e.g. 1 on a shared machine), else the runner's share of the cores."""
    return int(cell.config.get("threads") or threads)


def cell_commands(cell: Cell, g: dict, threads: int, progress: bool) -> list[tuple[str, list[str]]]:
    """(kind, ``cloob`` argv) of the cell's steps in order: ``train``, one ``eval`` per evaluation, ``analyze``.

    A cell of an evaluated-only source (``cell.source``) has only its evaluations, of that model, written to
    ``<cell>/eval``."""
    if cell.source is not None:
        model = (["--checkpoint", cell.source["checkpoint"]] if "checkpoint" in cell.source
                 else ["--timm", cell.source["timm"], "--weights", cell.source["weights"]])
        cmds = []
        for evaluator, spec, *extra in cell.evals:
            head = ["finetune"] if evaluator == "finetune" else ["eval", evaluator]
            cmds.append(("eval", [*head, *model, "--dataset", spec, "--out", str(cell.dir / "eval"), *extra]))
        return cmds
    train = ["train", "--config", str(cell.dir / "cell.yaml"), "--threads", str(threads)]
    if not progress:
        train.append("--no-progress")
    cmds = [("train", train)]
    for evaluator, spec, *extra in cell.evals:
        head = ["finetune"] if evaluator == "finetune" else ["eval", evaluator]
        cmds.append(("eval", [*head, "--checkpoint", str(cell.dir), "--dataset", spec, *extra]))
    if g.get("analyze"):
        cmds.append(("analyze", ["analyze", "--checkpoint", str(cell.dir), "--dataset", g["analyze"]]))
    return cmds


def _changed_keys(recorded: dict, config: dict) -> list[str]:
    """The config keys whose values differ between a recorded DONE config and the cell's, sorted."""
    return sorted(k for k in set(recorded) | set(config) if recorded.get(k) != config.get(k))


def _done(cell: Cell) -> dict | None:
    path = cell.dir / "DONE"
    if not path.is_file():
        return None
    done = json.loads(path.read_text())
    if done.get("config") != cell.config:
        changed = _changed_keys(done.get("config", {}), cell.config)
        raise GridError(f"cell {cell.name} finished with another config (differs in {', '.join(changed)}); "
                        f"delete {cell.dir} or choose another out")
    return done if done.get("evals") == cell.evals else None


def _restore(cell: Cell, archive: Path) -> bool:
    """Restore the cell from the archive when it has no DONE and the archived one matches its config and evals."""
    if (cell.dir / "DONE").is_file():
        return False
    kept = archived_done(archive / cell.name)
    if kept is None:
        return False
    if kept.get("config") != cell.config or kept.get("evals") != cell.evals:
        changed = _changed_keys(kept.get("config", {}), cell.config) or ["evals"]
        raise GridError(f"cell {cell.name} is archived in {archive / cell.name} with another config (differs in "
                        f"{', '.join(changed)}); delete that copy or choose another archive")
    return restore_cell(archive / cell.name, cell.dir)


def _log_to(path: Path) -> None:
    """This worker's stdout and stderr (and its subprocesses') go to ``path`` from here on."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _evaluate(argv: list[str], threads: int) -> None:
    """``cloob eval NAME ARGS...`` (or ``cloob finetune ARGS...``) in this process, through the registry."""
    import torch

    from cloob.evals import registry

    torch.set_num_threads(threads)
    name, args = (argv[0], argv[1:]) if argv[0] == "finetune" else (argv[1], argv[2:])
    ev = registry.get(name)
    path, result = registry.evaluate(ev, registry.parse_args(name, args))
    print(registry.summary(ev, path, result), flush=True)


def run_cell(cell: Cell, g: dict, threads: int, parallel: int) -> dict:
    """Train (resuming), evaluate, analyze; write DONE. Returns {status, seconds, step}.

    Runs in the cell's own worker process (see the module docstring): it changes this process's
    environment, thread count and, with ``parallel > 1``, its file descriptors 1 and 2.
    """
    from cloob.checkpoint import latest_checkpoint, read_meta

    t0 = time.perf_counter()
    threads = cell_threads(cell, threads)
    cell.dir.mkdir(parents=True, exist_ok=True)
    (cell.dir / "cell.yaml").write_text(yaml.safe_dump(cell.config, sort_keys=False))
    step = None  # an evaluated-only cell trains nothing
    resumed = None  # (step, training seconds) of the checkpoint a killed cell resumes from
    if cell.source is not None:  # what compare and the report read of a run: its label and seed
        (cell.dir / "config.yaml").write_text(yaml.safe_dump(cell.config, sort_keys=False))
    os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    for kind, argv in cell_commands(cell, g, threads, progress=parallel == 1):
        log = cell.dir / ("train.log" if kind == "train" else "eval.log")
        where = f" (see {log})" if parallel > 1 else ""
        if parallel > 1:
            _log_to(log)
            print(f"$ cloob {' '.join(argv)}", flush=True)
        if kind == "eval":
            try:
                _evaluate(argv, threads)
            except Exception as e:  # noqa: BLE001 - one failed evaluation fails its cell, not the grid
                if isinstance(e, REPORTED):  # bad input: the one line says it all
                    where = ""
                else:
                    import traceback

                    traceback.print_exc()
                return {"status": "failed", "seconds": time.perf_counter() - t0,
                        "error": f"`cloob {' '.join(argv)}` failed: {first_line(e)}{where}"}
            continue
        if kind == "train":
            resumed = _resume_point(cell.dir / "checkpoints")
        code = subprocess.call([sys.executable, "-m", "cloob.cli", *argv])
        if code:
            return {"status": "failed", "seconds": time.perf_counter() - t0,
                    "error": f"`cloob {' '.join(argv)}` exited {code}{where}"}
        if kind == "train":
            ckpt = latest_checkpoint(cell.dir / "checkpoints")
            step = read_meta(ckpt)["step"] if ckpt else 0
            planned = cell.config.get("max_steps")
            if ckpt is None or (planned and step < planned):
                return {"status": "interrupted", "seconds": time.perf_counter() - t0,
                        "error": f"training stopped at step {step} of {planned}"}
    seconds = time.perf_counter() - t0
    done = {"config": cell.config, "evals": cell.evals, "step": step}
    if resumed is not None:  # the cell's wall time includes the training its earlier runs kept
        done.update(resumed_at_step=resumed[0], seconds_before_resume=round(resumed[1], 2))
        seconds += resumed[1]
    done["seconds"] = round(seconds, 2)
    (cell.dir / "DONE").write_text(json.dumps(done, indent=1))
    return {"status": "done", "seconds": seconds, "step": step}


def _resume_point(ckpt_dir: Path) -> tuple[int, float] | None:
    """(step, training wall seconds) of the checkpoint ``cloob train --resume auto`` will continue from, or None.

    A checkpoint written before the seconds were recorded counts 0 s; ``cloob.analysis.runs.cell_seconds``
    recovers those from the metrics' clock.
    """
    from cloob.checkpoint import latest_intact_checkpoint, read_meta

    ckpt, _ = latest_intact_checkpoint(ckpt_dir)
    if ckpt is None:
        return None
    meta = read_meta(ckpt)
    return int(meta["step"]), float(meta.get("train_seconds", 0.0))


def run_cell_in_worker(cell: Cell, g: dict, threads: int, parallel: int) -> dict:
    """:func:`run_cell` in a fresh spawned process (spawn, not fork: the parent may hold torch's threads)."""
    t0 = time.perf_counter()
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(run_cell, cell, g, threads, parallel).result()
    except BrokenProcessPool:
        return {"status": "failed", "seconds": time.perf_counter() - t0,
                "error": "its worker process died (killed, or out of memory?)"}


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def run_experiment(grid_file: str, parallel: int | None = None, dry_run: bool = False, only: str | None = None,
                   argv: list[str] | None = None) -> int:
    """Run (or resume) every cell of a grid, then compare and report. Returns an exit code."""
    t_start = time.perf_counter()
    g = load_grid(grid_file)
    cells = expand(g)
    if only:
        cells = [c for c in cells if fnmatch.fnmatch(c.name, only)]
        if not cells:
            raise GridError(f"--only {only!r} matches no cell of {grid_file}")
    k = max(1, parallel or g["parallel"])
    threads = max(1, (os.cpu_count() or 1) // k)
    out = Path(g["out"])
    n = len(cells)
    print(f"experiment {g['name']}: {n} cells, {k} at a time ({threads} threads each) -> {out}", flush=True)
    if dry_run:
        for p in g["prepare"]:
            print(f"prepare {json.dumps(p)}")
        for c in cells:
            print(f"\n{c.name}  {json.dumps(c.overrides)}")
            for _, cmd in cell_commands(c, g, cell_threads(c, threads), progress=k == 1):
                print("  cloob " + " ".join(cmd))
        return 0
    for item in g["prepare"]:
        kind, opts = next(iter(item.items()))
        PREPARE[kind](dict(opts or {}))
    out.mkdir(parents=True, exist_ok=True)
    (out / "cells.json").write_text(json.dumps(
        [{"name": c.name, "dir": str(c.dir), "axes": c.axes, "overrides": c.overrides, "evals": c.evals}
         for c in cells], indent=1))
    results: dict[str, dict] = {}
    lock = threading.Lock()
    todo = []
    archive = Path(g["archive"]) if g.get("archive") else None
    if archive:
        restored = [c.name for c in cells if _restore(c, archive)]
        if restored:
            print(f"restored {len(restored)} finished cell(s) from {archive}", flush=True)
    for c in cells:
        done = _done(c)
        if done and archive and archived_done(archive / c.name) != done:
            archive_cell(c.dir, archive / c.name)  # finished before the grid had an archive
        if done:
            results[c.name] = {"status": "skipped", "seconds": 0.0, "step": done.get("step")}
            print(f"[{len(results)}/{n}] skip {c.name} (finished: DONE at step {done.get('step')})", flush=True)
        else:
            todo.append(c)
    t_run = time.perf_counter()

    def job(c: Cell) -> None:
        with lock:
            print(f"[{len(results) + 1}/{n}] start {c.name}", flush=True)
        r = run_cell_in_worker(c, g, threads, k)
        if archive and r["status"] == "done":
            archive_cell(c.dir, archive / c.name)
        with lock:
            results[c.name] = r
            ran = [x for x in results.values() if x["status"] != "skipped"]
            left = n - len(results)
            eta = (time.perf_counter() - t_run) / len(ran) * left if ran else 0
            msg = "done" if r["status"] == "done" else f"{r['status'].upper()}: {r.get('error')}"
            print(f"[{len(results)}/{n}] {msg} {c.name} in {_fmt(r['seconds'])} · elapsed "
                  f"{_fmt(time.perf_counter() - t_start)} · ETA {_fmt(eta)}", flush=True)

    if k == 1:
        for c in todo:
            job(c)
    else:
        with ThreadPoolExecutor(max_workers=k) as pool:
            list(pool.map(job, todo))
    finished = [c for c in cells if results[c.name]["status"] in ("done", "skipped")]
    summary = {"name": g["name"], "grid_file": str(grid_file), "grid_text": Path(grid_file).read_text(),
               "command": argv if argv is not None else sys.argv, "parallel": k, "threads_per_cell": threads,
               "cells": [{"name": c.name, **{key: (round(v, 2) if isinstance(v, float) else v)
                                             for key, v in results[c.name].items()}} for c in cells]}
    if finished:
        summary["compare_exit"], summary["report_exit"] = compare_and_report(g, [c.dir for c in finished], out)
        if g.get("select"):
            try:
                summary["best"] = str(select(g, cells, g["select"]))
            except GridError as e:  # a typo in the metric must not lose experiment.json
                print(f"error: {e}", file=sys.stderr)
                summary["select_error"] = str(e)
    summary["wall_seconds"] = round(time.perf_counter() - t_start, 2)
    (out / "experiment.json").write_text(json.dumps(summary, indent=1))
    failed = [c.name for c in cells if results[c.name]["status"] not in ("done", "skipped")]
    print(f"experiment {g['name']}: {len(finished)}/{n} cells finished in {_fmt(summary['wall_seconds'])}"
          f"{'; not finished: ' + ', '.join(failed) if failed else ''}\n"
          f"compare: {out / 'compare'}\nreport: {out / 'report.html'}", flush=True)
    return 1 if failed or summary.get("compare_exit") or summary.get("report_exit") else 0


def compare_and_report(g: dict, run_dirs: list[Path], out: Path) -> tuple[int, int]:
    """``<out>/compare/`` (Welch tables) and ``<out>/report.html`` of the finished cells; (compare, report) exit codes."""
    from cloob.analysis.report import write_report
    from cloob.analysis.runs import RunError
    from cloob.evals.compare import compare_runs, to_markdown

    cmp = g["compare"]
    codes = []
    try:
        result = compare_runs([str(d) for d in run_dirs], out / "compare", group_by=cmp.get("group_by") or "method",
                              baseline=cmp.get("baseline"), metrics=cmp.get("metric") or None,
                              alpha=float(cmp.get("alpha", 0.05)))
        print(to_markdown(result))
        print(f"wrote {out / 'compare' / 'compare.md'}, compare.csv, compare.json ({len(result['runs'])} runs)")
        codes.append(0)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: compare: {e}", file=sys.stderr)
        codes.append(2)
    try:
        print(f"wrote {write_report(run_dirs, out / 'report.html', title=g['name'])}")
        codes.append(0)
    except (RunError, FileNotFoundError, ValueError) as e:
        print(f"error: report: {e}", file=sys.stderr)
        codes.append(2)
    return codes[0], codes[1]
