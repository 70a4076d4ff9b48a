"""scripts/towers_figure.py on hand-made cells: reads labels, metrics and training seconds; refuses an empty grid."""
from __future__ import annotations

import json
from pathlib import Path

from scripts_loader import load_script


def _script():
    return load_script("towers_figure")


def _cell(grid: Path, name: str, label: str, top1: float, seconds: float, done: bool = True) -> None:
    cell = grid / name
    (cell / "eval").mkdir(parents=True)
    (cell / "config.yaml").write_text(f"label: {label}\nseed: 0\n")
    (cell / "eval" / "zeroshot-cifar10-test.json").write_text(json.dumps({"metrics": {"top1": top1}}))
    lines = [{"kind": "train", "step": 5, "time": seconds / 2}, {"kind": "eval", "step": 5, "time": 1.0},
             {"kind": "train", "step": 10, "time": seconds}]
    (cell / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    if done:
        (cell / "DONE").write_text(json.dumps({"seconds": seconds + 10}))


def test_reads_finished_cells_by_label(tmp_path, monkeypatch, capsys):
    mod = _script()
    grid = tmp_path / "grid"
    _cell(grid, "s0-a", "scratch-clip", 0.5, 200.0)
    _cell(grid, "s1-a", "scratch-clip", 0.6, 220.0)
    _cell(grid, "s0-b", "lit2-clip", 0.8, 240.0)
    _cell(grid, "s1-b", "lit2-clip", 0.9, 240.0, done=False)  # unfinished: not read
    cells = mod.finished_runs_by(grid, "label")
    assert {k: sorted(c.name for c in v) for k, v in cells.items()} == {"scratch-clip": ["s0-a", "s1-a"],
                                                                         "lit2-clip": ["s0-b"]}
    assert mod.cell_metric(grid / "s0-a", "zeroshot-cifar10-*/top1") == 0.5
    assert mod.cell_metric(grid / "s0-a", "linear-probe-*/top1") is None
    assert mod.train_seconds(grid / "s1-a") == 220.0  # the last train record's clock, not the eval one
    out = tmp_path / "fig.png"
    monkeypatch.setattr("sys.argv", ["towers_figure.py", str(grid), "--metric", "zeroshot-*/top1", "--variants",
                                     "scratch-clip,cbow-clip,lit2-clip", "--out", str(out)])
    assert mod.main() == 0
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"
    assert "no finished cells for 'cbow-clip'" in capsys.readouterr().err


def test_empty_grid_is_an_error(tmp_path, monkeypatch, capsys):
    mod = _script()
    (tmp_path / "grid").mkdir()
    monkeypatch.setattr("sys.argv", ["towers_figure.py", str(tmp_path / "grid"), "--metric", "x/top1",
                                     "--out", str(tmp_path / "f.png")])
    assert mod.main() == 2
    assert "no finished cells" in capsys.readouterr().err
    assert not (tmp_path / "f.png").exists()
