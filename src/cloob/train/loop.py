"""The training loop: one step, one epoch, the run (setup, resume, logging, checkpoints).

Gradient semantics: every process computes the loss over the global batch
(features all-gathered), and the parameter gradients are *summed* over
processes and micro-batches, so K processes × batch B train exactly like one
process with batch K·B (see :mod:`cloob.distributed`). DistributedDataParallel
averages, hence the loss is multiplied by the world size before backward.

Reproducibility: each sample's augmentation is drawn from an RNG seeded by
(seed, epoch, sample index) (:class:`SeededSamples`), so it does not depend on
the process, the data worker or the position in the run; the global torch RNG
(dropout, if a model has any) is re-seeded from (seed, rank, step) before each
step. A killed and resumed run therefore continues exactly (bitwise on CPU
fp32), and K processes see the same augmented pairs as one process. Streaming
(webdataset) data has no sample index: its augmentation follows the worker's RNG.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import IterableDataset, Subset

from cloob.data import BadSampleReport, DataError, image_transform, make_loader, open_pairs
from cloob.distributed import get_rank, get_world_size, is_distributed, scale_gradient
from cloob.losses import method_loss
from cloob.models import create_model, get_tokenizer, register_model_config
from cloob.train import checkpoint as ckpt
from cloob.train.config import TrainConfig, save_yaml
from cloob.train.schedule import lr_at


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite steps."""


@dataclass
class Position:
    """Where training stands: optimiser steps done and the data position."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of this epoch already consumed
    skipped_steps: int = 0  # total steps skipped for non-finite loss/gradients
    consecutive_skips: int = 0
    best_val_loss: float = math.inf
    best_checkpoint: str = ""


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
    report: BadSampleReport
    zeroshot_sets: list = field(default_factory=list)
    writer: object | None = None
    metrics_file: object | None = None


# ---------------------------------------------------------------- setup ----
def init_distributed() -> None:
    """Join the torchrun process group if launched by torchrun (gloo on CPU, nccl on GPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device cuda requested but CUDA is not available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


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


def lock_towers(model, lock_image: bool, lock_text: bool) -> None:
    clip = model.clip
    if lock_image:
        clip.lock_image_tower(unlocked_groups=0, freeze_bn_stats=True)
    if lock_text:
        for name, p in clip.named_parameters():
            if not name.startswith("visual.") and name != "logit_scale":
                p.requires_grad_(False)


def _split_validation(dataset, fraction: float, seed: int):
    """Deterministic hold-out of the last ``fraction`` of a seeded permutation."""
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

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch * 100_003 + int(i)) % (2**63 - 1))
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
    model, _, _ = create_model(
        cfg.model,
        pretrained=cfg.pretrained,
        inv_tau=cfg.inv_tau,
        learn_inv_tau=cfg.learn_inv_tau,
        hopfield_beta=cfg.hopfield_beta,
        learn_hopfield_beta=cfg.learn_hopfield_beta,
        device=device,
    )
    lock_towers(model, cfg.lock_image, cfg.lock_text)
    tokenizer = get_tokenizer(cfg.model)
    fmt = dict(csv_img_key=cfg.csv_img_key, csv_caption_key=cfg.csv_caption_key)
    if cfg.csv_separator is not None:
        fmt["csv_separator"] = cfg.csv_separator
    is_csv = cfg.train_data.lower().endswith((".csv", ".tsv"))
    train_tf = image_transform(model, train=True, resize=cfg.resize, augment=cfg.augment)
    eval_tf = image_transform(model, train=False, resize=cfg.resize)
    dataset = open_pairs(cfg.train_data, image_transform=train_tf, tokenizer=tokenizer, strict=cfg.strict,
                         **(fmt if is_csv else {}))
    val_dataset = None
    if cfg.val_data:
        val_is_csv = cfg.val_data.lower().endswith((".csv", ".tsv"))
        val_dataset = open_pairs(cfg.val_data, image_transform=eval_tf, tokenizer=tokenizer, strict=cfg.strict,
                                 **(fmt if val_is_csv else {}))
    elif cfg.val_fraction > 0:
        if isinstance(dataset, IterableDataset):
            raise DataError("val_fraction needs a map-style train set; give val_data for streaming data")
        dataset, val_dataset = _split_validation(dataset, cfg.val_fraction, cfg.seed)
        # the held-out part is read with the evaluation transform
        val_dataset = Subset(open_pairs(cfg.train_data, image_transform=eval_tf, tokenizer=tokenizer,
                                        strict=cfg.strict, check=False, **(fmt if is_csv else {})),
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
        param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps
    )
    zeroshot_sets = _zeroshot_sets(cfg, eval_tf) if cfg.zeroshot else []
    run = Run(cfg, run_dir, device, model, ddp, optimizer, dataset, val_dataset, steps_per_epoch, total_steps,
              BadSampleReport(cfg.train_data), zeroshot_sets)
    if rank == 0:
        log(f"cloob train: {cfg.method} · {cfg.model} · {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
            f"params · {world} process(es) on {device} · global batch {cfg.batch_size * world * cfg.accum_steps} · "
            f"{steps_per_epoch} steps/epoch · {total_steps} steps · run dir {run_dir}")
    return run


def _micro_batches_per_epoch(dataset, cfg: TrainConfig, world: int) -> int:
    if isinstance(dataset, IterableDataset):
        if not cfg.steps_per_epoch:
            raise DataError("streaming (webdataset) data has no length: set steps_per_epoch")
        return cfg.steps_per_epoch * cfg.accum_steps
    return len(dataset) // (cfg.batch_size * world)


def eval_set_name(spec: str) -> str:
    """Short name of an evaluation spec for metric keys: its prefix (``scenes-scene``) or file stem."""
    head, sep, rest = spec.partition(":")
    if sep and head and "/" not in head:
        return head
    return Path(spec.rstrip("/")).stem


def _zeroshot_sets(cfg: TrainConfig, eval_tf) -> list:
    """(name, dataset, classnames, templates) for the zero-shot hook."""
    from cloob.data import open_labelled
    from cloob.evals.templates import default_templates, load_templates

    sets = []
    for spec in cfg.zeroshot:
        ds = open_labelled(spec, image_transform=eval_tf, strict=cfg.strict)
        sets.append((eval_set_name(spec), ds, list(ds.classes), load_templates(default_templates(spec))))
    return sets


# ------------------------------------------------------------ RNG state ----
def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": [list(random.getstate()[1]), random.getstate()[0]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    internal, version = state["python"]
    random.setstate((version, tuple(internal), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7_919 + step) % (2**63 - 1)


# ----------------------------------------------------------- one step ----
def _features(run: Run, images, tokens):
    dtype = torch.bfloat16 if run.cfg.precision == "bf16" else None
    ctx = torch.autocast(run.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    with ctx:
        x, y = run.ddp(images.to(run.device, non_blocking=True), tokens.to(run.device, non_blocking=True))
    return x.float(), y.float()


def _loss(run: Run, x, y, parts: int):
    """Global loss; shared scalars' gradients scaled by 1/parts (summed over micro-batches)."""
    inv_tau = scale_gradient(run.model.inv_tau, 1.0 / parts)
    beta = run.model.hopfield_beta
    beta = scale_gradient(beta, 1.0 / parts) if beta is not None else None
    return method_loss(run.cfg.method, x, y, inv_tau, beta)


def train_step(run: Run, micro_batches: list) -> dict:
    """One optimiser step over ``accum_steps`` micro-batches (open_clip-style feature cache).

    With one micro-batch this is forward, loss, backward. With several, all
    features are first computed without gradient; then each micro-batch is
    re-encoded with gradient and the loss over the whole accumulated batch is
    back-propagated through it, so the gradient equals that of one big batch.
    Returns the loss, the gathered features' saturation terms and whether the
    step was skipped (non-finite loss or gradient).
    """
    cfg, model, optimizer = run.cfg, run.model, run.optimizer
    world = get_world_size()
    optimizer.zero_grad(set_to_none=True)
    n_micro = len(micro_batches)
    if n_micro == 1:
        x, y = _features(run, *micro_batches[0])
        loss = _loss(run, x, y, 1)
        finite = bool(torch.isfinite(loss))
        if finite:
            (loss * world).backward()
        feats = (x.detach(), y.detach())
    else:
        with torch.no_grad():
            cached = [_features(run, *mb) for mb in micro_batches]
        xs, ys = [c[0] for c in cached], [c[1] for c in cached]
        loss = _loss(run, torch.cat(xs), torch.cat(ys), 1).detach()
        finite = bool(torch.isfinite(loss))
        if finite:
            for m, mb in enumerate(micro_batches):
                sync = contextlib.nullcontext() if (m == n_micro - 1 or run.ddp is model) else run.ddp.no_sync()
                with sync:
                    x, y = _features(run, *mb)
                    xm = torch.cat(xs[:m] + [x] + xs[m + 1 :])
                    ym = torch.cat(ys[:m] + [y] + ys[m + 1 :])
                    (_loss(run, xm, ym, n_micro) * world).backward()
        feats = (torch.cat(xs), torch.cat(ys))
    grad_norm = float("nan")
    if finite:
        params = [p for p in model.parameters() if p.grad is not None]
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        finite = math.isfinite(grad_norm)
    if finite:
        optimizer.step()
        with torch.no_grad():  # open_clip's convention: keep ln(inv_tau) in [0, ln 100]
            model.clip.logit_scale.clamp_(0, math.log(100))
    else:
        optimizer.zero_grad(set_to_none=True)
    return {"loss": float(loss.detach()), "grad_norm": grad_norm, "skipped": not finite, "features": feats}


def saturation_logs(x: torch.Tensor, y: torch.Tensor, inv_tau: float) -> tuple[float, float]:
    """Mean log alignment score a and mean log uniformity penalty b over a batch (method.md §3)."""
    from cloob.analysis import saturation_terms

    terms = saturation_terms(x, y, inv_tau)
    return terms["mean_log_a"], terms["mean_log_b"]


# ----------------------------------------------------------- evaluation ----
@torch.no_grad()
def validation_loss(run: Run) -> float:
    """Contrastive loss of the method over the held-out pairs (mean over full batches)."""
    model = run.model
    was_training = model.training
    model.eval()
    loader = make_loader(run.val_dataset, run.cfg.batch_size, shuffle=False, seed=0, rank=get_rank(),
                         world_size=get_world_size(), num_workers=run.cfg.workers, drop_last=False)
    total, count = 0.0, 0
    beta = model.hopfield_beta
    for images, tokens in loader:
        x, y = model(images.to(run.device), tokens.to(run.device))
        if len(x) < 2 and run.cfg.method != "clip":
            continue
        loss = method_loss(run.cfg.method, x.float(), y.float(), model.inv_tau, beta)
        total += float(loss) * len(x)
        count += len(x)
    model.train(was_training)
    return total / max(count, 1)


def evaluate(run: Run) -> dict:
    out = {}
    if run.val_dataset is not None:
        out["val_loss"] = validation_loss(run)
    if run.zeroshot_sets:
        from cloob.evals.zeroshot import evaluate_zeroshot

        was_training = run.model.training
        run.model.eval()
        tokenizer = get_tokenizer(run.cfg.model)
        for name, ds, classes, templates in run.zeroshot_sets:
            res = evaluate_zeroshot(run.model, tokenizer, ds, classes, templates, batch_size=run.cfg.batch_size,
                                    num_workers=run.cfg.workers, progress=False)
            out[f"zeroshot/{name}/top1"] = float(res["top1"])
        run.model.train(was_training)
    return out


# ------------------------------------------------------------ checkpoints ----
def save(run: Run, pos: Position, metrics: dict | None = None) -> Path | None:
    if get_rank() != 0:
        return None
    model = run.model
    extras = {}
    if model.hopfield is not None:
        extras["log_beta"] = model.hopfield.log_beta.detach().cpu()
    train_state = {
        "optimizer": run.optimizer.state_dict(),
        "rng": rng_state(),
        "position": {k: v for k, v in vars(pos).items()},
        "extras": extras,
        "scaler": None,  # fp32 and bf16 autocast need no gradient scaler
    }
    meta = {
        "model": run.cfg.model,
        "method": run.cfg.method,
        "step": pos.step,
        "epoch": pos.epoch,
        "inv_tau": float(model.inv_tau.detach()),
        "hopfield_beta": None if model.hopfield is None else float(model.hopfield_beta.detach()),
        "config": run.cfg.to_dict(),
        "metrics": metrics or {},
    }
    protect = (pos.best_checkpoint,) if pos.best_checkpoint else ()
    import open_clip

    return ckpt.save_checkpoint(run.run_dir / "checkpoints", pos.step, model.clip.state_dict(), train_state, meta,
                                keep_last=run.cfg.keep_last, protect=protect,
                                model_config=open_clip.get_model_config(run.cfg.model))


def restore(run: Run, path: Path) -> Position:
    state = ckpt.load_train_state(path)
    run.model.clip.load_state_dict(ckpt.load_model_state(path))
    if run.model.hopfield is not None and "log_beta" in state.get("extras", {}):
        with torch.no_grad():
            run.model.hopfield.log_beta.copy_(state["extras"]["log_beta"])
    run.optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return Position(**state["position"])


def resolve_resume(run: Run) -> Path | None:
    spec = run.cfg.resume
    if not spec:
        return None
    if spec == "auto":
        return ckpt.latest_checkpoint(run.run_dir / "checkpoints")
    return ckpt.resolve_checkpoint(spec)


# ---------------------------------------------------------------- logging ----
def _open_logs(run: Run, pos: Position) -> None:
    if get_rank() != 0:
        return
    from torch.utils.tensorboard import SummaryWriter

    run.run_dir.mkdir(parents=True, exist_ok=True)
    path = run.run_dir / "metrics.jsonl"
    if path.exists():  # after a resume, drop lines from steps the checkpoint does not contain
        keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= pos.step]
        path.write_text("".join(ln + "\n" for ln in keep))
    run.metrics_file = open(path, "a")
    run.writer = SummaryWriter(str(run.run_dir / "tb"), purge_step=pos.step if pos.step else None)


def _log(run: Run, record: dict) -> None:
    if run.metrics_file is None:
        return
    run.metrics_file.write(json.dumps(record) + "\n")
    run.metrics_file.flush()
    prefix = "train" if record.get("kind") == "train" else "eval"
    for key, value in record.items():
        if key in ("kind", "step") or not isinstance(value, (int, float)) or value is None:
            continue
        run.writer.add_scalar(key if "/" in key else f"{prefix}/{key}", value, record["step"])


def write_run_info(run: Run) -> None:
    if get_rank() != 0:
        return
    import open_clip

    import cloob

    run.run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(run.cfg, run.run_dir / "config.yaml")
    versions = {
        "cloob": cloob.__version__,
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "world_size": get_world_size(),
        "threads": torch.get_num_threads(),
        "device": str(run.device),
    }
    (run.run_dir / "versions.json").write_text(json.dumps(versions, indent=2))


# ------------------------------------------------------------------ signals ----
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


# --------------------------------------------------------------------- run ----
def train(cfg: TrainConfig, log=print) -> dict:
    """Run (or resume) a training run; returns a summary dict.

    Raises:
        TrainingDiverged: ``max_skips`` consecutive non-finite steps (the last
            good checkpoint stays intact).
    """
    run = setup(cfg, log)
    rank, world = get_rank(), get_world_size()
    pos = Position()
    resume_from = resolve_resume(run)
    if resume_from is not None:
        pos = restore(run, resume_from)
        if rank == 0:
            log(f"resumed from {resume_from} (step {pos.step}, epoch {pos.epoch}, batch {pos.batch_in_epoch})")
    elif cfg.resume == "auto" and rank == 0:
        log("resume auto: no checkpoint yet, starting from scratch")
    write_run_info(run)
    _open_logs(run, pos)
    summary = {"run_dir": str(run.run_dir), "interrupted": False}
    pbar = None
    if rank == 0 and cfg.progress:
        from tqdm import tqdm

        pbar = tqdm(total=run.total_steps, initial=pos.step, unit="step", dynamic_ncols=True,
                    desc=f"{cfg.method}", file=sys.stderr)
    global_batch = cfg.batch_size * world * cfg.accum_steps
    eval_every = cfg.eval_every or run.steps_per_epoch
    save_every = cfg.save_every or run.steps_per_epoch
    last_metrics: dict = {}
    t_start = time.time()
    run.ddp.train()
    try:
        with StopFlag() as stop:
            while pos.step < run.total_steps and not summary["interrupted"]:
                if isinstance(run.dataset, SeededSamples):
                    run.dataset.epoch = pos.epoch
                loader = make_loader(run.dataset, cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=pos.epoch,
                                     rank=rank, world_size=world, num_workers=cfg.workers, drop_last=True,
                                     start_batch=pos.batch_in_epoch, report=run.report)
                micro = []
                steps_this_epoch = pos.batch_in_epoch // cfg.accum_steps
                torch.manual_seed(step_seed(cfg.seed, rank, pos.step))
                t0 = time.perf_counter()
                for batch in loader:
                    micro.append(batch)
                    if len(micro) < cfg.accum_steps:
                        continue
                    lr = lr_at(pos.step, cfg.lr, run.total_steps, cfg.warmup_steps, cfg.schedule,
                               cfg.restart_steps, cfg.min_lr)
                    for group in run.optimizer.param_groups:
                        group["lr"] = lr
                    out = train_step(run, micro)
                    pairs = sum(len(b[0]) for b in micro) * world
                    micro = []
                    pos.step += 1
                    pos.batch_in_epoch += cfg.accum_steps
                    steps_this_epoch += 1
                    if out["skipped"]:
                        pos.skipped_steps += 1
                        pos.consecutive_skips += 1
                        if rank == 0:
                            log(f"step {pos.step}: non-finite loss or gradient (loss={out['loss']}), step skipped "
                                f"({pos.consecutive_skips} in a row, {pos.skipped_steps} in total)")
                        if pos.consecutive_skips >= cfg.max_skips:
                            last = ckpt.latest_checkpoint(run.run_dir / "checkpoints")
                            raise TrainingDiverged(
                                f"{pos.consecutive_skips} consecutive non-finite steps (max_skips={cfg.max_skips}) "
                                f"at step {pos.step}; stopping. Last good checkpoint: {last or 'none'} "
                                "(not overwritten). Lower lr, enable grad_clip or check the data."
                            )
                    else:
                        pos.consecutive_skips = 0
                    dt = time.perf_counter() - t0
                    record = None
                    if rank == 0 and (pos.step % cfg.log_every == 0 or pos.step == 1 or pos.step == run.total_steps):
                        x, y = out["features"]
                        inv_tau = float(run.model.inv_tau.detach())
                        log_a, log_b = saturation_logs(x, y, inv_tau) if len(x) > 1 else (float("nan"),) * 2
                        beta = run.model.hopfield_beta
                        record = {"kind": "train", "step": pos.step,
                                  "epoch": pos.epoch + steps_this_epoch / run.steps_per_epoch,
                                  "time": round(time.time() - t_start, 3), "loss": out["loss"], "inv_tau": inv_tau,
                                  "beta": None if beta is None else float(beta.detach()), "lr": lr,
                                  "pairs_per_s": pairs / dt, "log_a": log_a, "log_b": log_b,
                                  "grad_norm": out["grad_norm"], "skipped_steps": pos.skipped_steps}
                        _log(run, record)
                    if pbar is not None:
                        pbar.update(1)
                        pbar.set_postfix(loss=f"{out['loss']:.4f}", pairs_s=f"{pairs / dt:.0f}", refresh=False)
                    epoch_done = steps_this_epoch >= run.steps_per_epoch
                    done = pos.step >= run.total_steps
                    if epoch_done:
                        pos.epoch += 1
                        pos.batch_in_epoch = 0
                    saved = False
                    if pos.step % eval_every == 0 or done:
                        metrics = evaluate(run)
                        if metrics:
                            last_metrics = metrics
                            if rank == 0:
                                _log(run, {"kind": "eval", "step": pos.step,
                                           "epoch": pos.epoch + (0 if epoch_done else steps_this_epoch / run.steps_per_epoch),
                                           **metrics})
                                if pbar is not None:
                                    pbar.write(f"step {pos.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
                            if metrics.get("val_loss", math.inf) < pos.best_val_loss:
                                pos.best_val_loss = metrics["val_loss"]
                                pos.best_checkpoint = ckpt.checkpoint_name(pos.step)
                                save(run, pos, metrics)
                                saved = True
                    interrupted = stop.agreed(run.device)
                    # periodic saves only after good steps: a checkpoint never lands inside a non-finite streak
                    if not saved and ((pos.step % save_every == 0 and not out["skipped"]) or done or interrupted):
                        save(run, pos, last_metrics)
                    if interrupted:
                        summary["interrupted"] = True
                        if rank == 0:
                            name = signal.Signals(stop.signum).name if stop.signum else "a signal"
                            log(f"\n{name} received: stopped after step {pos.step} and saved a checkpoint in "
                                f"{run.run_dir / 'checkpoints'}.\nResume with: cloob train --config "
                                f"{run.run_dir / 'config.yaml'} --resume auto")
                        break
                    if done or epoch_done:
                        break
                    torch.manual_seed(step_seed(cfg.seed, rank, pos.step))
                    t0 = time.perf_counter()
                else:
                    # the loader ran out before a full step (bad samples dropped a batch): next epoch
                    pos.epoch += 1
                    pos.batch_in_epoch = 0
    finally:
        if pbar is not None:
            pbar.close()
        if run.metrics_file is not None:
            run.metrics_file.close()
            run.writer.close()
    if rank == 0 and run.report.n_bad:
        log(run.report.format())
    if is_distributed():
        dist.barrier()  # rank 0 may still be writing the final checkpoint
    summary.update(step=pos.step, epoch=pos.epoch, skipped_steps=pos.skipped_steps, metrics=last_metrics,
                   bad_samples=run.report.n_bad, seconds=round(time.time() - t_start, 2))
    return summary
