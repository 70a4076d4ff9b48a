"""cloob.archive: a finished cell's records are copied (never checkpoints), a cut copy never counts as
finished, and a grid restores archived cells instead of training them again."""
import json
import shutil

import pytest
import yaml

from cloob.archive import archive_cell, archived_done, record_files, restore_cell
from cloob.experiment import GridError, expand, load_grid, run_experiment


def fake_cell(d, step=3, extra_eval=True):
    """A finished cell as `cloob experiment` leaves it, with the big files it must not archive."""
    (d / "eval").mkdir(parents=True)
    (d / "checkpoints" / "step-00000003").mkdir(parents=True)
    (d / "checkpoints" / "step-00000003" / "model.safetensors").write_bytes(b"\0" * 1000)
    (d / "tb").mkdir()
    (d / "tb" / "events.out").write_bytes(b"x")
    (d / "eval" / "zeroshot-a.json").write_text(json.dumps({"metrics": {"top1": 0.5}}))
    if extra_eval:
        (d / "eval" / "zeroshot-b.json").write_text(json.dumps({"metrics": {"top1": 0.25}}))
    (d / "eval" / "zeroshot-a.png").write_bytes(b"png")
    for f in ("cell.yaml", "config.yaml"):
        (d / f).write_text("method: clip\n")
    (d / "metrics.jsonl").write_text('{"kind": "train", "step": 3}\n')
    (d / "DONE").write_text(json.dumps({"config": {"method": "clip"}, "evals": [], "step": step}))


def test_archive_copies_the_records_only_and_replaces_an_older_copy(tmp_path):
    cell, dest = tmp_path / "run" / "c", tmp_path / "results" / "c"
    fake_cell(cell)
    copied = archive_cell(cell, dest)
    expected = {"DONE", "cell.yaml", "config.yaml", "metrics.jsonl", "eval/zeroshot-a.json", "eval/zeroshot-b.json"}
    assert {str(p) for p in copied} == expected
    on_disk = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}
    assert on_disk == expected  # no checkpoint, TensorBoard file or figure
    assert (dest / "eval" / "zeroshot-a.json").read_text() == (cell / "eval" / "zeroshot-a.json").read_text()

    # the cell is re-run with one evaluation less: the stale eval file does not survive in the archive
    shutil.rmtree(cell)
    fake_cell(cell, step=5, extra_eval=False)
    archive_cell(cell, dest)
    assert not (dest / "eval" / "zeroshot-b.json").exists()
    assert archived_done(dest)["step"] == 5


def test_an_unfinished_cell_is_not_archived_and_a_cut_copy_is_not_finished(tmp_path, monkeypatch):
    cell = tmp_path / "c"
    fake_cell(cell)
    (cell / "DONE").unlink()
    with pytest.raises(FileNotFoundError, match="not a finished cell"):
        archive_cell(cell, tmp_path / "a")
    (cell / "DONE").write_text(json.dumps({"config": {}, "evals": [], "step": 3}))

    real = shutil.copyfile

    def fail_on_metrics(src, dst, *a, **k):
        if str(src).endswith("metrics.jsonl"):
            raise OSError("disk full")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(shutil, "copyfile", fail_on_metrics)
    with pytest.raises(OSError):
        archive_cell(cell, tmp_path / "a")
    assert archived_done(tmp_path / "a") is None
    assert not restore_cell(tmp_path / "a", tmp_path / "fresh")


def test_restore_fills_a_cell_without_done_and_leaves_a_finished_one_alone(tmp_path):
    cell, kept = tmp_path / "c", tmp_path / "kept"
    fake_cell(cell)
    archive_cell(cell, kept)
    assert not restore_cell(kept, cell)  # has DONE already

    target = tmp_path / "new"
    (target / "checkpoints" / "step-00000002").mkdir(parents=True)  # an interrupted run's checkpoint
    assert restore_cell(kept, target)
    assert set(map(str, record_files(target))) == set(map(str, record_files(kept)))
    assert json.loads((target / "DONE").read_text()) == json.loads((cell / "DONE").read_text())
    assert (target / "checkpoints" / "step-00000002").is_dir()


def _grid(tmp_path, **extra):
    g = {"name": "t", "out": str(tmp_path / "out"), "archive": str(tmp_path / "results"),
         "set": {"train_data": "scenes:x", "max_steps": 3}, "grid": {"method": ["clip"], "seed": [0]}}
    g.update(extra)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(g))
    return path


def test_a_grid_restores_a_matching_archived_cell_and_refuses_a_changed_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    grid = _grid(tmp_path)
    (cell,) = expand(load_grid(grid))
    kept = tmp_path / "results" / cell.name
    kept.mkdir(parents=True)
    (kept / "DONE").write_text(json.dumps({"config": cell.config, "evals": cell.evals, "step": 3, "seconds": 1.0}))
    (kept / "config.yaml").write_text(yaml.safe_dump(cell.config))
    (kept / "eval").mkdir()
    (kept / "eval" / "zeroshot-x.json").write_text(json.dumps({"metrics": {"top1": 0.5}, "method": "clip"}))
    ran = []
    monkeypatch.setattr("cloob.experiment.runner.run_cell_in_worker", lambda *a, **k: ran.append(a) or {"status": "done"})
    monkeypatch.setattr("cloob.experiment.runner.compare_and_report", lambda *a: (0, 0))
    assert run_experiment(str(grid)) == 0
    out = capsys.readouterr().out
    assert "restored 1 finished cell(s)" in out and "skip clip-s0" in out
    assert ran == [] and (cell.dir / "DONE").is_file() and (cell.dir / "eval" / "zeroshot-x.json").is_file()

    # the grid changes (another budget): the archived cell is not silently reused or overwritten
    shutil.rmtree(cell.dir)
    grid = _grid(tmp_path, set={"train_data": "scenes:x", "max_steps": 4})
    with pytest.raises(GridError, match="archived in .* with another config \\(differs in max_steps\\)"):
        run_experiment(str(grid))
    assert json.loads((kept / "DONE").read_text())["config"]["max_steps"] == 3
