"""The training loop's shape: train() stays short, Position owns the epoch rollover, and
micro_batches yields each step's batches (seeded, resumable, rolling over). No model, no files."""
import inspect
from types import SimpleNamespace

import pytest
import torch

from cloob.data import BadSampleReport, DataError
from cloob.train import loop
from cloob.train.state import Position, step_seed

MAX_TRAIN_LINES = 60


def test_train_reads_top_down_in_at_most_60_lines():
    lines = inspect.getsource(loop.train).splitlines()
    assert len(lines) <= MAX_TRAIN_LINES, (
        f"train() has {len(lines)} lines (limit {MAX_TRAIN_LINES}): move a part into a helper beside it")


def test_next_epoch_rolls_over_and_keeps_the_rest():
    pos = Position(step=7, epoch=2, batch_in_epoch=6, skipped_steps=1, consecutive_skips=1, best_val_loss=0.5,
                   best_checkpoint="step-00000004")
    pos.next_epoch()
    assert pos == Position(step=7, epoch=3, batch_in_epoch=0, skipped_steps=1, consecutive_skips=1,
                           best_val_loss=0.5, best_checkpoint="step-00000004")


def test_advance_counts_a_step_and_its_micro_batches():
    pos = Position(step=3, epoch=1, batch_in_epoch=4)
    pos.advance(2)
    assert (pos.step, pos.epoch, pos.batch_in_epoch) == (4, 1, 6)


class _Numbered(torch.utils.data.Dataset):
    """Sample i is (i, i): a batch says which samples it holds."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor([float(i)]), torch.tensor([i])


def _run(n, *, batch_size=2, accum_steps=1, steps_per_epoch=3, total_steps=5):
    cfg = SimpleNamespace(batch_size=batch_size, accum_steps=accum_steps, seed=11, workers=0, train_data="numbers")
    return SimpleNamespace(cfg=cfg, dataset=_Numbered(n), report=BadSampleReport("numbers"),
                           steps_per_epoch=steps_per_epoch, total_steps=total_steps, pin_memory=False)


def _drive(run, pos, log=None):
    """Consume micro_batches as train() does: count each step, roll over after steps_per_epoch."""
    seen = []
    for micro, t0 in loop.micro_batches(run, pos, log=log or (lambda *_: None)):
        assert len(micro) == run.cfg.accum_steps and isinstance(t0, float)
        expected = torch.Generator().manual_seed(step_seed(run.cfg.seed, 0, pos.step))
        # the global RNG was seeded from (seed, rank, step) just before this step's batches
        assert torch.equal(torch.rand(3), torch.rand(3, generator=expected))
        seen.append((pos.epoch, [b[1].tolist() for b in micro]))
        pos.advance(run.cfg.accum_steps)
        if pos.batch_in_epoch // run.cfg.accum_steps >= run.steps_per_epoch:
            pos.next_epoch()
    return seen


def test_micro_batches_yield_accum_steps_batches_per_step_and_a_new_loader_per_epoch():
    run = _run(12, accum_steps=2, steps_per_epoch=3, total_steps=5)
    pos = Position()
    seen = _drive(run, pos)
    assert [e for e, _ in seen] == [0, 0, 0, 1, 1]
    epoch0 = sorted(i for _, micro in seen[:3] for b in micro for i in b)
    assert epoch0 == [[i] for i in range(12)]  # one full pass of 6 batches in 3 steps of 2
    assert (pos.step, pos.epoch, pos.batch_in_epoch) == (5, 1, 4)


def test_a_resumed_position_continues_with_the_same_batches():
    whole = _drive(_run(12, accum_steps=2, total_steps=5), Position())
    resumed = _drive(_run(12, accum_steps=2, total_steps=5), Position(step=2, epoch=0, batch_in_epoch=4))
    assert resumed == whole[2:]


def test_nothing_is_read_once_the_planned_step_is_reached():
    assert list(loop.micro_batches(_run(12), Position(step=5))) == []


def test_a_short_pass_is_announced_and_the_next_epoch_starts():
    lines = []
    run = _run(4, batch_size=2, steps_per_epoch=3, total_steps=3)  # 2 steps per pass
    pos = Position()
    seen = _drive(run, pos, log=lines.append)
    assert [e for e, _ in seen] == [0, 0, 1]
    assert lines == ["epoch 0: the data ran out after 2 of 3 steps_per_epoch; the next epoch starts now"]


def test_a_pass_without_a_step_is_a_data_error():
    with pytest.raises(DataError, match="a whole pass gave no step of 2×2 samples"):
        _drive(_run(3, batch_size=2, accum_steps=2), Position())
