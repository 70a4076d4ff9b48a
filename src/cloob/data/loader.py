"""Batches: seeded, per-rank sharded, resumable, with bad samples counted in the main process.

:func:`make_loader` works for map-style datasets (index order from a seeded
permutation, DistributedSampler-style) and for :class:`torch.utils.data.IterableDataset`
(webdataset shards split per rank and per worker by the dataset itself).
"""
from __future__ import annotations

import logging
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from cloob.data.bad import BadSample, BadSampleReport, DataError
from cloob.seeding import mix_seed

log = logging.getLogger("cloob.data")


def collate(samples: list) -> tuple:
    """Collate (x, y) samples, dropping :class:`BadSample` sentinels.

    Returns ``(*stacked_fields, bad_list)``: tensors are stacked, ints become a
    long tensor, anything else (e.g. caption strings) stays a list. Runs in the
    DataLoader worker; the sentinels travel back with the batch to be counted.
    """
    good = [s for s in samples if not isinstance(s, BadSample)]
    bad = [s for s in samples if isinstance(s, BadSample)]
    if not good:
        return (None, None, bad)
    fields = []
    for column in zip(*good):
        first = column[0]
        if isinstance(first, torch.Tensor):
            fields.append(torch.stack(column))
        elif isinstance(first, int):
            fields.append(torch.tensor(column, dtype=torch.long))
        else:
            fields.append(list(column))
    return (*fields, bad)


def rank_indices(n: int, *, shuffle: bool, seed: int, epoch: int, rank: int, world_size: int,
                 batch_size: int, drop_last: bool) -> list[int]:
    """The indices rank ``rank`` reads in epoch ``epoch``.

    Order: ``torch.randperm(n)`` from a generator seeded with ``seed + epoch``
    (DistributedSampler's recipe), identical on every rank. With ``drop_last`` the
    order is cut to a multiple of ``world_size * batch_size`` so every rank gets the
    same number of full batches; without it nothing is padded: the ranks together
    cover every index exactly once (ranks may differ by one sample).
    """
    if shuffle:
        g = torch.Generator()
        g.manual_seed(int(seed) + int(epoch))
        order = torch.randperm(n, generator=g).tolist()
    else:
        order = list(range(n))
    if drop_last:
        order = order[: (n // (world_size * batch_size)) * world_size * batch_size]
    return order[rank::world_size]


class PairLoader:
    """Iterable of ``(images, tokens)`` (or ``(images, labels)``) batches; see :func:`make_loader`."""

    def __init__(self, dataset, batch_size, *, shuffle, seed, epoch, rank, world_size, num_workers,
                 drop_last, start_batch, report, pin_memory=False):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, epoch
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.drop_last, self.start_batch, self.pin_memory = drop_last, start_batch, pin_memory
        self.report = report if report is not None else BadSampleReport(getattr(dataset, "name", ""))
        self.iterable = isinstance(dataset, IterableDataset)
        if not self.iterable:
            idx = rank_indices(len(dataset), shuffle=shuffle, seed=seed, epoch=epoch, rank=rank,
                               world_size=world_size, batch_size=batch_size, drop_last=drop_last)
            batches = [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
            if drop_last and batches and len(batches[-1]) < batch_size:
                batches.pop()
            self.batches = batches[start_batch:]

    def __len__(self) -> int:
        if self.iterable:
            raise TypeError("a webdataset loader has no length")
        return len(self.batches)

    def _loader(self) -> DataLoader:
        # A private generator (seeded by seed and epoch) draws the workers' base seed, so creating
        # an iterator neither consumes nor depends on the global RNG (exact resume).
        gen = torch.Generator()
        gen.manual_seed(mix_seed(self.seed, self.epoch))
        common = dict(num_workers=self.num_workers, collate_fn=collate, generator=gen,
                      persistent_workers=False, pin_memory=self.pin_memory)
        if self.iterable:
            self.dataset.configure(rank=self.rank, world_size=self.world_size, seed=self.seed,
                                   epoch=self.epoch, shuffle=self.shuffle)
            return DataLoader(self.dataset, batch_size=self.batch_size, drop_last=self.drop_last, **common)
        return DataLoader(self.dataset, batch_sampler=self.batches, **common)

    def __iter__(self) -> Iterator[tuple]:
        this_pass = BadSampleReport(self.report.name)  # this pass only; self.report accumulates over passes
        skip = self.start_batch if self.iterable else 0
        try:
            for i, (*fields, bad) in enumerate(self._loader()):
                for b in bad:
                    self.report.add(b)
                    this_pass.add(b)
                if fields[0] is None:
                    continue
                self.report.n_ok += len(fields[0])
                this_pass.n_ok += len(fields[0])
                if i < skip:
                    continue
                yield tuple(fields)
        except GeneratorExit:  # the consumer stopped early, e.g. at the end of an epoch of steps_per_epoch steps
            self._log_pass(this_pass)
            raise
        if this_pass.n_bad and not this_pass.n_ok:
            raise DataError(f"no valid sample in this epoch; every sample was bad:\n{this_pass.format()}")
        self._log_pass(this_pass)

    def _log_pass(self, this_pass: BadSampleReport) -> None:
        """One warning per pass that skipped samples, with that pass's counts."""
        if this_pass.n_bad:
            log.warning("epoch %d rank %d: skipped %d bad samples in this pass\n%s", self.epoch, self.rank,
                        this_pass.n_bad, this_pass.format())


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int, epoch: int = 0,
                rank: int = 0, world_size: int = 1, num_workers: int = 0, drop_last: bool = True,
                start_batch: int = 0, report: BadSampleReport | None = None, pin_memory: bool = False) -> PairLoader:
    """Batches of ``(images (B,3,H,W) float, tokens (B, context_length) long)``.

    Deterministic given (seed, epoch). Map-style datasets: rank ``rank`` reads
    ``rank_indices(...)``, and ``start_batch`` skips that many batches of the
    epoch without decoding them (exact resume). Iterable (webdataset) datasets:
    shards split over ``rank * num_workers + worker`` and ``start_batch`` batches are
    read and discarded. Bad samples are dropped from their batch (B may be
    smaller) and counted into ``report`` (a new one is made if None; see
    ``loader.report``). An epoch with bad samples and no valid one raises :class:`DataError`.
    ``pin_memory``: batches in page-locked memory, for non-blocking copies to a GPU.
    """
    return PairLoader(dataset, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, rank=rank,
                      world_size=world_size, num_workers=num_workers, drop_last=drop_last,
                      start_batch=start_batch, report=report, pin_memory=pin_memory)


def first_valid(dataset, name: str, limit: int | None = None) -> None:
    """Raise one clear :class:`DataError` if ``dataset`` has no valid sample.

    Reads samples in order until the first good one (so a healthy source costs
    one decode); a source with none raises with the bad-sample report.
    """
    report = BadSampleReport(name)
    if isinstance(dataset, IterableDataset):
        it = iter(dataset)
        for s in it:
            if not isinstance(s, BadSample):
                return
            report.add(s)
    else:
        n = len(dataset) if limit is None else min(limit, len(dataset))
        for i in range(n):
            s = dataset[i]
            if not isinstance(s, BadSample):
                return
            report.add(s)
    if limit is not None and report.n_bad >= limit:
        return
    if report.n_bad == 0:
        raise DataError(f"data source {name!r} is empty (no samples found)")
    raise DataError(f"data source {name!r} has no valid sample:\n{report.format()}")
