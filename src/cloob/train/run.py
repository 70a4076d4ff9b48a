"""Building a run: process group, device, model, data, optimiser, all in one :class:`Run`.

Reproducibility: each sample's augmentation is drawn from an RNG seeded by
(seed, epoch, sample index) (:class:`SeededSamples`), so it does not depend on
the process, the data worker or the position in the run. Streaming (webdataset)
data has no sample index: its augmentation follows the worker's RNG.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import IterableDataset, Subset

from cloob.data import BadSampleReport, DataError, image_transform, open_pairs, spec_slug
from cloob.data.policy import policy_from
from cloob.device import default_device
from cloob.distributed import get_rank, get_world_size, is_distributed
from cloob.locking import lock_towers
from cloob.losses import method_loss
from cloob.models import create_model, get_tokenizer, register_model_config
from cloob.seeding import mix_seed
from cloob.train.config import ConfigError, TrainConfig
from cloob.train.precision import (Compiled, adamw_options, device_problem, make_scaler, pin_memory,
                                   to_pure_bf16)
from cloob.train.schedule import Schedules


@dataclass
class Run:
    """Everything the loop needs, built once by :func:`setup`."""

    cfg: TrainConfig
    run_dir: Path
    device: torch.device
    model: torch.nn.Module  # ContrastiveModel
    ddp: torch.nn.Module  # the module to call (DDP wrapper or the model)
    optimizer: torch.optim.Optimizer
    dataset: object
    val_dataset: object | None
    steps_per_epoch: int
    total_steps: int
    schedules: Schedules
    report: BadSampleReport
    zeroshot_sets: list = field(default_factory=list)
    writer: object | None = None
    metrics_file: object | None = None
    scaler: object | None = None  # fp16's torch.amp.GradScaler (checkpointed)
    forward: Callable | None = None  # torch.compile of the towers' forward (None: call ddp)
    loss_fn: Callable | None = None  # torch.compile of method_loss (None: the step's method_loss)
    pin_memory: bool = False


def init_distributed() -> None:
    """Join the torchrun process group if launched by torchrun (gloo on CPU, nccl on GPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(cfg: TrainConfig) -> torch.device:
    name = default_device(cfg.device)
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device cuda requested but CUDA is not available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


def run_directory(cfg: TrainConfig) -> Path:
    return Path(cfg.run_dir) if cfg.run_dir else Path(cfg.output_dir) / cfg.name


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay for gains, biases and temperatures (1-D and 0-D tensors)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "logit_scale" in name or "log_beta" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def split_validation(dataset, fraction: float, seed: int):
    """Deterministic hold-out of the last ``fraction`` of a seeded permutation: (train, validation) Subsets."""
    n = len(dataset)
    n_val = max(1, int(round(n * fraction)))
    if n - n_val < 2:
        raise DataError(f"val_fraction {fraction} leaves fewer than 2 training pairs out of {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    return Subset(dataset, sorted(order[: n - n_val])), Subset(dataset, sorted(order[n - n_val :]))


class SeededSamples(torch.utils.data.Dataset):
    """A map-style dataset whose sample i is read under an RNG seeded by (seed, epoch, i)."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentations the next reads draw (as ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, self.epoch, int(i)))
            return self.dataset[i]


def setup(cfg: TrainConfig, log=print) -> Run:
    init_distributed()
    rank, world = get_rank(), get_world_size()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg)
    run_dir = run_directory(cfg)
    if cfg.model_config:
        register_model_config(cfg.model_config)
    torch.manual_seed(cfg.seed)  # identical initial weights on every process
    pretrained = cfg.pretrained
    if pretrained and Path(pretrained).is_dir():  # a cloob run or checkpoint (e.g. CLIP's, to start CLOOB from)
        from cloob.checkpoint import resolve_checkpoint

        pretrained = str(resolve_checkpoint(pretrained) / "model.safetensors")
    problem = device_problem(cfg.precision, device)
    if problem:
        raise ConfigError(problem)
    model, _, _ = create_model(
        cfg.model,
        pretrained=pretrained,
        inv_tau=cfg.inv_tau,
        learn_inv_tau=cfg.learn_inv_tau,
        hopfield_beta=cfg.hopfield_beta,
        learn_hopfield_beta=cfg.learn_hopfield_beta,
        logit_bias=cfg.logit_bias,
        learn_logit_bias=cfg.learn_logit_bias,
        device=device,
        channels_last=cfg.channels_last,
    )
    if cfg.grad_checkpointing:
        model.clip.set_grad_checkpointing(True)
    if cfg.precision == "pure_bf16":
        to_pure_bf16(model)
    lock_towers(model, cfg.lock_image, cfg.lock_text, cfg.lock_image_unlocked_groups, cfg.lock_text_unlocked_layers)
    cached = _feature_cache(model, cfg)
    tokenizer = get_tokenizer(cfg.model)
    fmt = dict(csv_img_key=cfg.csv_img_key, csv_caption_key=cfg.csv_caption_key)
    policy = policy_from(cfg)
    if cfg.csv_separator is not None:
        fmt["csv_separator"] = cfg.csv_separator
    is_csv = cfg.train_data.lower().endswith((".csv", ".tsv"))
    # cached image features need the same pixels every epoch: the evaluation transform (no random crop)
    train_tf = image_transform(model, train="image" not in cached, resize=cfg.resize, augment=cfg.augment)
    eval_tf = image_transform(model, train=False, resize=cfg.resize)
    is_wds = cfg.train_data.startswith("wds:") or cfg.train_data.lower().endswith(".tar")
    stream = {"resampled": True} if cfg.dataset_resampled and is_wds else {}
    dataset = open_pairs(cfg.train_data, image_transform=train_tf, tokenizer=tokenizer, strict=cfg.strict,
                         policy=policy, **(fmt if is_csv else stream))
    val_dataset = None
    if cfg.val_data:
        val_is_csv = cfg.val_data.lower().endswith((".csv", ".tsv"))
        val_dataset = open_pairs(cfg.val_data, image_transform=eval_tf, tokenizer=tokenizer, strict=cfg.strict,
                                 policy=policy, **(fmt if val_is_csv else {}))
    elif cfg.val_fraction > 0:
        if isinstance(dataset, IterableDataset):
            raise DataError("val_fraction needs a map-style train set; give val_data for streaming data")
        dataset, val_dataset = split_validation(dataset, cfg.val_fraction, cfg.seed)
        # the held-out part is read with the evaluation transform
        val_dataset = Subset(open_pairs(cfg.train_data, image_transform=eval_tf, tokenizer=tokenizer,
                                        strict=cfg.strict, check=False, policy=policy, **(fmt if is_csv else {})),
                             val_dataset.indices)
    if not isinstance(dataset, IterableDataset):
        dataset = SeededSamples(dataset, cfg.seed)
    micro_per_epoch = _micro_batches_per_epoch(dataset, cfg, world)
    steps_per_epoch = micro_per_epoch // cfg.accum_steps
    if steps_per_epoch < 1:
        raise DataError(
            f"{cfg.train_data}: {micro_per_epoch} batches of {cfg.batch_size}×{world} per epoch "
            f"is less than one step of {cfg.accum_steps} micro-batches; lower batch_size"
        )
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    ddp = model
    if is_distributed():
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
        **adamw_options(cfg.adamw, device)
    )
    zeroshot_sets = _zeroshot_sets(cfg, eval_tf) if (cfg.zeroshot or cfg.imagenet_val or cfg.imagenet_v2) else []
    schedules = Schedules.from_config(cfg, total_steps)
    run = Run(cfg, run_dir, device, model, ddp, optimizer, dataset, val_dataset, steps_per_epoch, total_steps,
              schedules, BadSampleReport(cfg.train_data), zeroshot_sets, scaler=make_scaler(cfg.precision, device),
              forward=Compiled(ddp, "model", log) if cfg.torch_compile in ("model", "step") else None,
              loss_fn=Compiled(method_loss, "loss", log) if cfg.torch_compile in ("loss", "step") else None,
              pin_memory=pin_memory(cfg.pin_memory, device))
    if rank == 0:
        log(f"cloob train: {cfg.method} · {cfg.model} · {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
            f"params · {world} process(es) on {device} · global batch {cfg.batch_size * world * cfg.accum_steps} · "
            f"{steps_per_epoch} steps/epoch · {total_steps} steps · run dir {run_dir}")
        recipe = schedules.describe()
        if recipe:
            log(f"schedules: {recipe}")
        if cfg.lock_image or cfg.lock_text:
            from cloob.locking import trainable_summary

            locked = [f"image tower (last {cfg.lock_image_unlocked_groups} groups trainable)"] if cfg.lock_image else []
            locked += [f"text tower (last {cfg.lock_text_unlocked_layers} layers trainable)"] if cfg.lock_text else []
            cache = (f"; feature cache: {' and '.join(cached)} features computed once per distinct input"
                     + (" (images read with the evaluation transform)" if "image" in cached else "")) if cached else ""
            log(f"locked: {', '.join(locked)}, in eval mode; {trainable_summary(model)}{cache}")
    return run


def _feature_cache(model, cfg: TrainConfig) -> list[str]:
    """Turn on the feature cache of the fully locked towers (``feature_cache``); returns ["image"], ["text"], both or []."""
    if not cfg.feature_cache:
        return []
    from cloob.towers import enable_feature_cache

    try:
        return enable_feature_cache(model.clip, image=cfg.lock_image and not cfg.lock_image_unlocked_groups,
                                    text=cfg.lock_text and not cfg.lock_text_unlocked_layers)
    except ValueError as e:
        raise ConfigError(f"{cfg.model}: {e}") from None


def _micro_batches_per_epoch(dataset, cfg: TrainConfig, world: int) -> int:
    if isinstance(dataset, IterableDataset):
        if cfg.train_num_samples:  # open_clip's --train-num-samples: the epoch's samples over all processes
            return max(1, cfg.train_num_samples // (cfg.batch_size * world))
        if not cfg.steps_per_epoch:
            raise DataError("streaming (webdataset) data has no length: set train_num_samples or steps_per_epoch")
        return cfg.steps_per_epoch * cfg.accum_steps
    if cfg.dataset_resampled or cfg.train_num_samples:
        raise ConfigError("dataset_resampled and train_num_samples are for webdataset shards (wds:...), "
                          f"not {cfg.train_data}")
    return len(dataset) // (cfg.batch_size * world)


def _zeroshot_sets(cfg: TrainConfig, eval_tf) -> list:
    """(metric key of top-1, of top-5 or None, dataset, classnames, templates) for the zero-shot hook.

    ``zeroshot`` specs are cloob's labelled specs (``zeroshot/<name>/top1``) or ``NAME:ROOT`` for a dataset
    of :mod:`cloob.data.published` (names and prompts of :mod:`cloob.evals.prompts`); ``imagenet_val`` and
    ``imagenet_v2`` are logged under open_clip's names (``imagenet-zeroshot-val-top1``).
    """
    from cloob.data import PREFIXES, open_labelled
    from cloob.data.published import DATASETS, open_imagenet_folder, open_published
    from cloob.evals import prompts
    from cloob.evals.templates import default_templates, load_templates

    read = dict(image_transform=eval_tf, strict=cfg.strict, policy=policy_from(cfg))
    sets = []
    for spec in cfg.zeroshot:
        name, sep, root = spec.partition(":")
        if sep and name in DATASETS and name not in PREFIXES:
            ds = open_published(name, root, "test", **read)
            sets.append((f"zeroshot/{name}/top1", f"zeroshot/{name}/top5", ds, prompts.classnames(name, ds.classes),
                         prompts.templates(name)))
        else:
            ds = open_labelled(spec, **read)
            sets.append((f"zeroshot/{spec_slug(spec, short=True)}/top1", None, ds, list(ds.classes),
                         load_templates(default_templates(spec))))
    for key, folder, v2 in (("imagenet", cfg.imagenet_val, False), ("imagenetv2", cfg.imagenet_v2, True)):
        if folder:
            ds = open_imagenet_folder(folder, v2=v2, **read)
            sets.append((f"{key}-zeroshot-val-top1", f"{key}-zeroshot-val-top5", ds, prompts.classnames("imagenet"),
                         prompts.templates("imagenet")))
    return sets
