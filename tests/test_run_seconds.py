"""Wall seconds of a run and of a grid cell summed over resumes (cloob.analysis.runs), including cells resumed
from checkpoints written before the training seconds were recorded, whose clock restarted at 0."""
import json

from cloob.analysis.runs import cell_seconds, clock_segments, train_seconds


def _cell(path, clock, done=None):
    """A run directory whose train records carry ``clock`` (step -> time), with an eval record between."""
    path.mkdir(parents=True)
    lines = [{"kind": "train", "step": s, "time": t} for s, t in clock]
    lines.insert(1, {"kind": "val", "step": clock[0][0], "time": 99999.0})  # not the training clock
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if done is not None:
        (path / "DONE").write_text(json.dumps(done))
    return path


def test_a_clock_that_runs_on_is_one_stretch(tmp_path):
    run = _cell(tmp_path / "a", [(10, 5.0), (20, 10.0), (30, 16.0)], {"seconds": 20.0, "resumed_at_step": 20,
                                                                      "seconds_before_resume": 10.0})
    assert clock_segments(run) == [16.0]
    assert train_seconds(run) == 16.0
    assert cell_seconds(run) == 20.0  # DONE already counts the checkpoint's seconds


def test_a_restarted_clock_adds_the_earlier_stretches(tmp_path):
    # killed after step 1700 at 2437.7 s, resumed from the step-1700 checkpoint of the old format: the clock
    # restarted; resumed once more from a new-format checkpoint, the clock went on
    clock = [(10, 14.0), (1700, 2437.7), (1710, 12.4), (1750, 60.0), (1760, 61.0), (1800, 110.9)]
    run = _cell(tmp_path / "b", clock, {"seconds": 128.7})
    assert clock_segments(run) == [2437.7, 110.9]
    assert train_seconds(run) == 2437.7 + 110.9
    assert cell_seconds(run) == 128.7 + 2437.7


def test_unfinished_or_unlogged_runs_have_no_seconds(tmp_path):
    assert cell_seconds(_cell(tmp_path / "c", [(10, 5.0)])) is None  # no DONE yet
    empty = tmp_path / "d"
    empty.mkdir()
    assert train_seconds(empty) is None and clock_segments(empty) == []
