"""make_loader: seeded order, exact resume, rank/worker splitting covers every sample once."""
from collections import Counter

import pytest
import torch
from torch.utils.data import Dataset

from cloob.data import BadSampleReport, make_loader, open_pairs
from cloob.data.csvfile import write_csv
from cloob.data.wds import WdsPairs, write_wds


class Indexed(Dataset):
    """self[i] = (tensor([i]), i); counts reads (num_workers=0 only)."""

    def __init__(self, n):
        self.n, self.reads = n, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.reads += 1
        return torch.tensor([float(i)]), i


def _ids(loader):
    return [i for _, labels in loader for i in labels.tolist()]


@pytest.mark.parametrize("world_size,num_workers", [(1, 0), (2, 0), (3, 2)])
def test_map_style_ranks_cover_every_sample_exactly_once(world_size, num_workers):
    ds = Indexed(23)
    seen = Counter()
    for rank in range(world_size):
        seen.update(_ids(make_loader(ds, 4, shuffle=True, seed=5, rank=rank, world_size=world_size,
                                     num_workers=num_workers, drop_last=False)))
    assert seen == Counter(range(23))


def test_drop_last_gives_equal_full_batches_per_rank_and_no_duplicates():
    ds = Indexed(23)
    loaders = [make_loader(ds, 4, shuffle=True, seed=0, rank=r, world_size=2, drop_last=True) for r in range(2)]
    assert [len(l) for l in loaders] == [2, 2]
    ids = [i for l in loaders for i in _ids(l)]
    assert len(ids) == 16 == len(set(ids))


def test_order_is_deterministic_per_seed_and_epoch():
    ds = Indexed(40)
    a = _ids(make_loader(ds, 5, shuffle=True, seed=1, epoch=3))
    assert a == _ids(make_loader(ds, 5, shuffle=True, seed=1, epoch=3))
    assert a != _ids(make_loader(ds, 5, shuffle=True, seed=1, epoch=4))
    assert sorted(a) == list(range(40))
    ref = torch.randperm(40, generator=torch.Generator().manual_seed(1 + 3)).tolist()  # DistributedSampler's recipe
    assert a == ref


def test_start_batch_resumes_exactly_without_decoding_skipped_batches():
    ds = Indexed(40)
    full = [b.tolist() for _, b in make_loader(ds, 5, shuffle=True, seed=2, epoch=1)]
    ds.reads = 0
    tail = [b.tolist() for _, b in make_loader(ds, 5, shuffle=True, seed=2, epoch=1, start_batch=3)]
    assert tail == full[3:]
    assert ds.reads == 5 * len(tail)


@pytest.mark.parametrize("world_size,num_workers", [(1, 0), (2, 0), (2, 2), (3, 2)])
def test_webdataset_ranks_and_workers_cover_every_sample_exactly_once(tmp_path, pairs, world_size, num_workers):
    many = [(img, f"{cap} #{k}") for k in range(3) for img, cap in pairs]  # 18 pairs
    spec = write_wds(many, tmp_path, per_shard=3)  # 6 shards
    seen = Counter()
    for rank in range(world_size):
        ds = WdsPairs(spec, image_transform=None, tokenizer=None)
        loader = make_loader(ds, 1, shuffle=True, seed=0, epoch=1, rank=rank, world_size=world_size,
                             num_workers=num_workers, drop_last=False)
        seen.update(caps[0] for _, caps in loader)
    assert seen == Counter(cap for _, cap in many)


def test_bad_samples_are_counted_in_main_process_with_workers(tmp_path, pairs):
    f = write_csv(pairs, tmp_path / "p.csv")
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines + ["missing1.png,x", "missing2.png,y", "images/0000000.png,"]) + "\n")
    ds = open_pairs(str(f), image_transform=None, tokenizer=None)
    report = BadSampleReport()
    batches = list(make_loader(ds, 3, shuffle=True, seed=0, num_workers=2, drop_last=False, report=report))
    assert sum(len(caps) for _, caps in batches) == len(pairs)
    assert report.counts == {"missing_file": 2, "empty_caption": 1} and report.n_ok == len(pairs)


def test_streaming_skip_report_is_logged_once_per_pass_with_that_pass_counts(tmp_path, pairs, caplog):
    import io
    import logging
    import tarfile

    spec = write_wds(pairs[:4], tmp_path, per_shard=4)
    shard = tmp_path / "bad.tar"
    with tarfile.open(shard, "w") as tar:  # one sample without a caption, read first
        info = tarfile.TarInfo("x.png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"png"))
    ds = WdsPairs(str(shard) + "::" + spec, image_transform=None, tokenizer=None)
    report = BadSampleReport("s")
    caplog.set_level(logging.WARNING, logger="cloob.data")
    for epoch in range(2):  # two full passes
        assert sum(len(x) for x, _ in make_loader(ds, 2, shuffle=False, seed=0, epoch=epoch, drop_last=False,
                                                  report=report)) == 4
    for _ in make_loader(ds, 2, shuffle=False, seed=0, epoch=2, drop_last=False, report=report):
        break  # a pass cut short, as by the end of an epoch of steps_per_epoch steps
    passes = [r.getMessage() for r in caplog.records if r.name == "cloob.data"]
    assert len(passes) == 3, passes
    for message in passes:
        assert "skipped 1 bad samples in this pass" in message and "  missing_column: 1\n" in message
    assert "4 valid samples, 1 skipped" in passes[0] and "4 valid samples, 1 skipped" in passes[1]
    assert "1 valid samples, 1 skipped" in passes[2]
    assert report.counts == {"missing_column": 3} and report.n_ok == 9  # the total still accumulates
