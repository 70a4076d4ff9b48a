"""Image–caption pairs from webdataset tar shards (``{key}.jpg|png`` + ``{key}.txt``).

Shard lists use brace notation (``data/shard-{000000..000099}.tar``; several
patterns joined by ``::``). Shards are streamed (``tarfile`` stream mode over
``webdataset.gopen``, so ``pipe:`` URLs work too) and split first over
processes, then over DataLoader workers: worker ``w`` of rank ``r`` reads shards
``k, k + R*W, ...`` with ``k = r*W + w`` (R ranks, W workers), after a shuffle of
the shard list seeded with ``seed + epoch`` that is the same on every rank.
Every shard is read by exactly one (rank, worker); with fewer shards than
``R*W`` some workers get none. With ``resampled`` (open_clip's ``--dataset-resampled``, for multi-node
runs whose shards do not split evenly) each (rank, worker) instead draws shards with replacement, for
ever, from its own generator seeded by (seed, epoch, rank, worker); the epoch ends after
``steps_per_epoch`` steps (``train_num_samples``).

A shard that ends in the middle of a member counts one ``truncated_shard`` bad
sample (the sample being read) and reading moves on to the next shard. A sample
with a member that must not be read (an absolute or ``..`` name, a link or a
device, more than ``max_image_bytes``; :mod:`cloob.data.policy`) is skipped whole
and counted once.
"""
from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path
from typing import Callable

import braceexpand
import torch
from torch.utils.data import IterableDataset

from cloob.data.bad import BadSample, BadSampleError, DataError, check_caption, decode_image, handle_bad
from cloob.data.csvfile import finish_pair
from cloob.data.policy import DEFAULT_POLICY, ReadPolicy, member_problem
from cloob.seeding import mix_seed

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def expand_urls(spec: str) -> list[str]:
    """``a-{0..2}.tar::b.tar`` -> [a-0.tar, a-1.tar, a-2.tar, b.tar]."""
    urls = []
    for part in spec.split("::"):
        if part:
            urls.extend(braceexpand.braceexpand(part))
    if not urls:
        raise DataError(f"webdataset spec {spec!r} names no shard")
    return urls


def split_key(name: str) -> tuple[str, str]:
    """webdataset's convention: key = path up to the first dot of the base name."""
    d, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{d}/{stem}" if d else stem), ext.lower()


def _open(url: str):
    if "://" in url or url.startswith("pipe:"):
        import webdataset

        return webdataset.gopen(url, "rb")
    return open(url, "rb")


def iter_shard(url: str, is_complete: Callable[[dict], bool] = lambda m: True, policy: ReadPolicy = DEFAULT_POLICY):
    """Yield (key, {ext: bytes}) for each sample of one shard, or a BadSampleError.

    When the shard ends early, the sample being read counts once as
    ``truncated_shard``; a sample whose members were all read before the break
    (``is_complete``) is still yielded. A sample with a member that ``policy``
    refuses is yielded once as that BadSampleError, and none of its members is read.
    """
    if "://" not in url and not url.startswith("pipe:") and not Path(url).is_file():
        yield BadSampleError("missing_file", url, None, "shard does not exist")
        return
    key, members, reading, refused = None, {}, None, None
    try:
        with _open(url) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for info in tar:
                if info.isdir():
                    continue
                k, ext = split_key(info.name)
                if k.startswith("__") or "/__" in k:
                    continue
                if key is not None and k != key:
                    if key != refused:
                        yield key, members
                    members = {}
                key = k
                if k == refused:
                    continue  # another member of a refused sample
                problem = member_problem(info, policy)
                if problem is not None:
                    refused, members = k, {}
                    yield BadSampleError(problem[0], url, info.name, problem[1])
                    continue
                reading = info.name
                members[ext] = tar.extractfile(info).read()
                reading = None
            # tarfile's stream mode ends quietly on a partial header; a complete shard has
            # its two zero blocks (end-of-archive marker) after the last member
            if "://" not in url and not url.startswith("pipe:") and Path(url).stat().st_size - tar.offset < 1024:
                raise tarfile.ReadError("no end-of-archive marker")
    except (tarfile.TarError, EOFError, OSError) as e:
        if reading is None and key is not None and key != refused and is_complete(members):
            yield key, members
            reading = "(next member header)"
        yield BadSampleError("truncated_shard", url, reading or key, f"shard ends early ({e})")
        return
    if key is not None and key != refused:
        yield key, members


def iter_pairs(url: str, caption_key: str = "txt", policy: ReadPolicy = DEFAULT_POLICY, strict: bool = False):
    """Yield ``(member, sample)`` for each sample of one shard, in shard order.

    ``sample`` is ``(RGB PIL image, caption str)`` or a :class:`~cloob.data.bad.BadSample`
    (strict: :class:`DataError` instead); ``member`` is ``"<key>.<image ext>"`` (the key alone
    when the sample has no image, None for a shard-level failure) so a reader can find the image again.
    """
    complete = lambda m: caption_key in m and any(e in m for e in IMAGE_EXTS)  # noqa: E731
    for item in iter_shard(url, complete, policy):
        if isinstance(item, BadSampleError):
            yield None, handle_bad(item, strict)
            continue
        key, m = item
        ext = next((e for e in IMAGE_EXTS if e in m), None)
        try:
            if ext is None or caption_key not in m:
                what = "image (.jpg/.png)" if ext is None else f".{caption_key} caption"
                raise BadSampleError("missing_column", url, key, f"sample has no {what}")
            caption = check_caption(m[caption_key], url, key)
            image = decode_image(m[ext], f"{url}:{key}.{ext}", key, policy)
        except BadSampleError as e:
            yield (key if ext is None else f"{key}.{ext}"), handle_bad(e, strict)
            continue
        yield f"{key}.{ext}", (image, caption)


class WdsPairs(IterableDataset):
    """Streaming (image, tokens) pairs from webdataset shards; bad samples become
    :class:`~cloob.data.bad.BadSample` sentinels (or raise when strict)."""

    def __init__(self, spec: str, *, image_transform: Callable | None, tokenizer: Callable | None,
                 strict: bool = False, caption_key: str = "txt", shuffle_buffer: int = 0,
                 policy: ReadPolicy = DEFAULT_POLICY, resampled: bool = False):
        self.urls = expand_urls(spec)
        self.resampled = resampled
        self.name, self.policy = spec, policy
        self.image_transform, self.tokenizer, self.strict = image_transform, tokenizer, strict
        self.caption_key, self.shuffle_buffer = caption_key, shuffle_buffer
        self.configure()

    def configure(self, *, rank: int = 0, world_size: int = 1, seed: int = 0, epoch: int = 0,
                  shuffle: bool = False) -> "WdsPairs":
        """Set the process split and the epoch's shard order (called by make_loader)."""
        self.rank, self.world_size, self.seed, self.epoch, self.shuffle = rank, world_size, seed, epoch, shuffle
        return self

    def my_shards(self):
        """This (rank, worker)'s shards for the epoch: its share of the (shuffled) list, or, ``resampled``, an
        endless draw with replacement."""
        if self.resampled:
            info = torch.utils.data.get_worker_info()
            rng = random.Random(mix_seed(self.seed, self.epoch, self.rank, info.id if info else 0))
            return (rng.choice(self.urls) for _ in iter(int, 1))
        urls = list(self.urls)
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(urls)
        info = torch.utils.data.get_worker_info()
        n_workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        k = self.rank * n_workers + worker
        return urls[k :: self.world_size * n_workers]

    def _samples(self):
        for url in self.my_shards():
            for _, sample in iter_pairs(url, self.caption_key, self.policy, self.strict):
                if isinstance(sample, BadSample):
                    yield sample
                    continue
                yield finish_pair(*sample, self.image_transform, self.tokenizer)

    def __iter__(self):
        if not self.shuffle_buffer or not self.shuffle:
            yield from self._samples()
            return
        info = torch.utils.data.get_worker_info()
        rng = random.Random(mix_seed(self.seed, self.epoch, self.rank, info.id if info else 0))
        buf = []
        for s in self._samples():
            buf.append(s)
            if len(buf) >= self.shuffle_buffer:
                yield buf.pop(rng.randrange(len(buf)))
        rng.shuffle(buf)
        yield from buf


def write_wds(pairs, out_dir, *, per_shard: int = 1000, prefix: str = "shard", fmt: str = "png") -> str:
    """Write (PIL image, caption) pairs as shards ``prefix-000000.tar`` ... Returns the brace spec."""
    import webdataset

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer, n_shards = None, 0
    for i, (image, caption) in enumerate(pairs):
        if i % per_shard == 0:
            if writer is not None:
                writer.close()
            writer = webdataset.TarWriter(str(out_dir / f"{prefix}-{n_shards:06d}.tar"))
            n_shards += 1
        buf = io.BytesIO()
        image.save(buf, format="PNG" if fmt == "png" else "JPEG", quality=95)
        writer.write({"__key__": f"{i:09d}", fmt: buf.getvalue(), "txt": caption.encode("utf-8")})
    if writer is not None:
        writer.close()
    if n_shards == 0:
        raise DataError("write_wds: no pairs to write")
    last = n_shards - 1
    return str(out_dir / (f"{prefix}-{{000000..{last:06d}}}.tar" if last else f"{prefix}-000000.tar"))
