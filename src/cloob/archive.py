"""Finished grid cells kept with the repository, so a grid resumes in a fresh clone.

``runs/`` is not versioned (checkpoints are large), so a grid's finished cells vanish with the
machine. A grid with ``archive: results/<name>`` copies each finished cell's files of record to
``<archive>/<cell>/`` (small enough to commit: ``DONE``, ``cell.yaml``, ``config.yaml``,
``versions.json``, ``metrics.jsonl``, ``eval/*.json`` and ``analysis/analysis.json``; never
checkpoints, figures or TensorBoard files) and, when a cell directory has no ``DONE``, restores
them from there, so the cell counts as finished and the tables (``cloob compare``,
``scripts/*_table.py``) read it as before. An archive can be read in place too: it has the
layout of a grid's ``out`` directory.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

FILES = ("cell.yaml", "config.yaml", "versions.json", "metrics.jsonl")
GLOBS = ("eval/*.json", "analysis/analysis.json")


def record_files(cell_dir: Path) -> list[Path]:
    """The files of record of a finished cell, relative to ``cell_dir``; ``DONE`` is not listed (it goes last)."""
    cell_dir = Path(cell_dir)
    files = [Path(f) for f in FILES if (cell_dir / f).is_file()]
    for pattern in GLOBS:
        files += sorted(p.relative_to(cell_dir) for p in cell_dir.glob(pattern) if p.is_file())
    return files


def _copy(src: Path, dst: Path, files: list[Path]) -> None:
    """Copy ``files`` and then ``DONE`` from ``src`` to ``dst``: DONE last, so a cut copy is not a finished cell."""
    for rel in files:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        tmp = dst / rel.with_name(rel.name + ".tmp")
        shutil.copyfile(src / rel, tmp)
        tmp.replace(dst / rel)
    tmp = dst / "DONE.tmp"
    shutil.copyfile(src / "DONE", tmp)
    tmp.replace(dst / "DONE")


def archive_cell(cell_dir: Path, dest: Path) -> list[Path]:
    """Copy a finished cell's files of record to ``dest`` (replacing an older copy); returns the files copied.

    Raises FileNotFoundError when ``cell_dir`` has no ``DONE`` (an unfinished cell is never archived)."""
    cell_dir, dest = Path(cell_dir), Path(dest)
    if not (cell_dir / "DONE").is_file():
        raise FileNotFoundError(f"{cell_dir} is not a finished cell (no DONE)")
    files = record_files(cell_dir)
    if dest.exists():
        (dest / "DONE").unlink(missing_ok=True)  # the old copy stops counting before it is replaced
        for old in record_files(dest):
            if old not in files:
                (dest / old).unlink()
    dest.mkdir(parents=True, exist_ok=True)
    _copy(cell_dir, dest, files)
    return files + [Path("DONE")]


def archived_done(src: Path) -> dict | None:
    """The archived ``DONE`` record of a cell (config, evals, step, seconds), or None when there is none."""
    path = Path(src) / "DONE"
    return json.loads(path.read_text()) if path.is_file() else None


def restore_cell(src: Path, cell_dir: Path) -> bool:
    """Copy an archived cell into ``cell_dir`` when the archive holds it and ``cell_dir`` has no ``DONE``.

    Returns True when files were restored. Training files already in ``cell_dir`` (an interrupted
    run's checkpoints) are left alone; the archived record supersedes them."""
    src, cell_dir = Path(src), Path(cell_dir)
    if (cell_dir / "DONE").is_file() or archived_done(src) is None:
        return False
    cell_dir.mkdir(parents=True, exist_ok=True)
    _copy(src, cell_dir, record_files(src))
    return True
