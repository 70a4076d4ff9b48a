"""SIGINT/SIGTERM during training: finish the step, save, and stop on every process together."""
from __future__ import annotations

import signal

import torch
import torch.distributed as dist

from cloob.distributed import is_distributed


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop finishes the current step, saves and exits."""

    def __init__(self):
        self.signum = 0
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def agreed(self, device) -> bool:
        """True on every process when any process was signalled."""
        flag = torch.tensor([1.0 if self.signum else 0.0], device=device)
        if is_distributed():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "a signal"
