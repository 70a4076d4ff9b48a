"""Training configuration: one dataclass, loaded from YAML, overridden from the command line.

Every field is a YAML key and a flag of the same name (``batch_size`` <->
``--batch-size``; booleans also have ``--no-…``). Unknown keys and wrong types
are refused with a message naming the key, the file and what was expected.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cloob.errors import CloobError
from cloob.data.policy import DEFAULT_POLICY
from cloob.methods import METHODS, uses_bias  # no torch: the CLI builds its parser from this module

SCHEDULES = ("cosine", "cosine-restarts", "constant")
PRECISIONS = ("fp32", "bf16", "fp16", "pure_bf16")  # cloob.train.precision says what each does
COMPILE_MODES = ("none", "model", "loss", "step")
ADAMW_IMPLS = ("auto", "fused", "foreach", "for-loop")


class ConfigError(CloobError, ValueError):
    """An invalid training configuration."""


@dataclass
class TrainConfig:
    # where
    name: str = "run"  # run directory name under output_dir
    output_dir: str = "runs"
    run_dir: typing.Optional[str] = None  # explicit run directory (overrides output_dir/name)
    # model
    model: str = "cloob-rn-tiny"
    model_config: typing.Optional[str] = None  # extra open_clip model JSON, registered under its file stem
    pretrained: typing.Optional[str] = None  # local open_clip weights file, or a cloob run/checkpoint dir (weights only)
    lock_image: bool = False
    lock_text: bool = False
    # pretrained towers (LiT): partial locking and the feature cache of locked towers
    lock_image_unlocked_groups: int = 0  # with lock_image: the image tower's last N groups stay trainable
    lock_text_unlocked_layers: int = 0  # with lock_text: the text tower's last N layers stay trainable
    feature_cache: bool = False  # compute a fully locked tower's features once per distinct input (needs augment off)
    label: typing.Optional[str] = None  # free-form name of the variant (`cloob compare --group-by label`)
    # objective
    method: str = "clip"  # clip | cloob | infoloob | infonce-hopfield | siglip | siglip-hopfield
    inv_tau: typing.Optional[float] = None  # default: 1/0.07 for clip, 10 otherwise (the paper: 30; SigLIP: 10)
    learn_inv_tau: typing.Optional[bool] = None  # default: learned for clip and siglip*, fixed otherwise
    logit_bias: typing.Optional[float] = None  # sigmoid methods' bias b; default -10 (SigLIP's initialisation)
    learn_logit_bias: bool = True
    hopfield_beta: typing.Optional[float] = None  # default 14.3 for Hopfield methods
    learn_hopfield_beta: bool = False
    # recipes against the early collapse of the Hopfield methods (README, "CLOOB at small budgets")
    inv_tau_start: typing.Optional[float] = None  # ramp inv_tau from this value to inv_tau (not learned then)
    inv_tau_ramp: float = 0.0  # fraction of the run the inv_tau ramp takes (geometric)
    hopfield_beta_start: typing.Optional[float] = None  # ramp beta from this value to hopfield_beta
    hopfield_beta_ramp: float = 0.0  # fraction of the run the beta ramp takes (geometric)
    # fraction of the run trained with CLIP's loss before the method's own; default 0.5 for Hopfield methods
    # (the short-budget recipe chosen on validation data, README), 0 otherwise (the paper: 0)
    clip_warm_start: typing.Optional[float] = None
    # data
    train_data: str = ""
    val_data: typing.Optional[str] = None
    val_fraction: float = 0.0  # held-out fraction of a map-style train set for the validation loss
    csv_img_key: str = "filepath"
    csv_caption_key: str = "title"
    csv_separator: typing.Optional[str] = None
    steps_per_epoch: typing.Optional[int] = None  # needed for streaming (webdataset) data, or train_num_samples
    train_num_samples: typing.Optional[int] = None  # samples per epoch of streaming data (open_clip's flag)
    dataset_resampled: bool = False  # webdataset shards drawn with replacement per worker (multi-node)
    workers: int = 0
    resize: str = "bicubic"
    augment: bool = False
    strict: bool = False
    data_root: typing.Optional[str] = None  # CSV paths resolve here and must lie under it (default: the CSV's folder)
    allow_any_path: bool = False  # read CSV paths outside the data root too
    max_image_bytes: int = DEFAULT_POLICY.max_image_bytes  # larger image files are skipped unread
    max_image_pixels: int = DEFAULT_POLICY.max_image_pixels  # larger images are skipped before decoding
    # optimisation
    batch_size: int = 256  # per process
    accum_steps: int = 1
    epochs: int = 1
    max_steps: typing.Optional[int] = None
    lr: float = 5e-4
    weight_decay: float = 0.2
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    warmup_steps: int = 0
    warmup_fraction: typing.Optional[float] = None  # warm-up as a fraction of the run; replaces warmup_steps
    schedule: str = "cosine"
    restart_steps: typing.Optional[int] = None  # cycle length of cosine-restarts
    min_lr: float = 0.0
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA, gradient scaler) | pure_bf16
    grad_checkpointing: bool = False  # recompute the towers' activations in the backward pass
    torch_compile: str = "none"  # none | model | loss | step (a failed compile warns and runs eagerly)
    channels_last: bool = True  # NHWC convolutions for ResNet/timm image towers
    pin_memory: typing.Optional[bool] = None  # pinned batches and non-blocking copies; default: on with CUDA
    adamw: str = "auto"  # auto (fused on CUDA, foreach elsewhere) | fused | foreach | for-loop
    seed: int = 0
    threads: typing.Optional[int] = None
    device: str = "auto"  # auto | cpu | cuda
    # observation and reliability
    log_every: int = 10
    eval_every: int = 0  # steps; 0 = at the end of each epoch
    save_every: int = 0  # steps; 0 = at the end of each epoch
    keep_last: int = 3
    resume: typing.Optional[str] = None  # auto | checkpoint dir
    max_skips: int = 5  # consecutive non-finite steps before stopping
    collapse_warn_steps: int = 10  # warn once when the loss sits at its collapsed value this many steps; 0 = off
    zeroshot: typing.List[str] = field(default_factory=list)  # labelled eval specs (or NAME:ROOT of cloob.data.published)
    imagenet_val: typing.Optional[str] = None  # ImageNet val class folders: imagenet-zeroshot-val-top1/-top5, as open_clip
    imagenet_v2: typing.Optional[str] = None  # ImageNetV2 folders: imagenetv2-zeroshot-val-top1/-top5
    zeroshot_every: int = 0  # epochs between zero-shot evaluations (and at the end); 0 = with every evaluation
    progress: bool = True

    # ---- derived defaults -------------------------------------------------
    def resolved(self) -> "TrainConfig":
        """Fill method-dependent defaults and validate values; returns a new config."""
        cfg = dataclasses.replace(self)
        if cfg.method not in METHODS:
            raise ConfigError(f"method must be one of {sorted(METHODS)}, got {cfg.method!r}")
        hopfield = METHODS[cfg.method][1]
        # Hopfield/InfoLOOB defaults are the short-budget recipe (docs/recipe.md), not the paper's
        # inv_tau 30 without warm start: at a few hundred steps that recipe collapses early.
        if cfg.inv_tau is None:
            cfg.inv_tau = 1 / 0.07 if cfg.method == "clip" else 10.0
        if cfg.clip_warm_start is None:
            cfg.clip_warm_start = 0.5 if hopfield else 0.0
        if cfg.learn_inv_tau is None:  # CLIP and SigLIP learn their temperature; CLOOB's paper fixes it
            cfg.learn_inv_tau = (cfg.method == "clip" or uses_bias(cfg.method)) and cfg.inv_tau_start is None
        if uses_bias(cfg.method):
            if cfg.logit_bias is None:
                cfg.logit_bias = -10.0  # SigLIP: b = -10 keeps the N² - N negatives from swamping the start
        elif cfg.logit_bias is not None:
            raise ConfigError(f"logit_bias is the sigmoid loss's bias (methods siglip, siglip-hopfield), "
                              f"not {cfg.method!r}'s")
        if hopfield and cfg.hopfield_beta is None:
            cfg.hopfield_beta = 14.3
        if not hopfield:
            cfg.hopfield_beta = None
            if cfg.hopfield_beta_start is not None:
                raise ConfigError(f"hopfield_beta_start needs a Hopfield method (cloob, infonce-hopfield, siglip-hopfield), "
                                  f"not {cfg.method!r}")
        if not cfg.train_data:
            raise ConfigError("train_data is required (a .csv/.tsv file, wds:<shards>, scenes:<DIR>, cifar10-captions:)")
        checks = [
            (cfg.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {cfg.schedule!r}"),
            (cfg.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {cfg.precision!r}"),
            (cfg.torch_compile in COMPILE_MODES,
             f"torch_compile must be one of {COMPILE_MODES}, got {cfg.torch_compile!r}"),
            (cfg.adamw in ADAMW_IMPLS, f"adamw must be one of {ADAMW_IMPLS}, got {cfg.adamw!r}"),
            (cfg.train_num_samples is None or cfg.train_num_samples >= 1, "train_num_samples must be >= 1"),
            (cfg.train_num_samples is None or cfg.steps_per_epoch is None,
             "give train_num_samples or steps_per_epoch, not both (one sets the other)"),
            (cfg.resize in ("bicubic", "bilinear"), f"resize must be bicubic or bilinear, got {cfg.resize!r}"),
            (cfg.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {cfg.device!r}"),
            (cfg.batch_size >= 1, "batch_size must be >= 1"),
            (cfg.accum_steps >= 1, "accum_steps must be >= 1"),
            (cfg.epochs >= 1, "epochs must be >= 1"),
            (cfg.max_steps is None or cfg.max_steps >= 1, "max_steps must be >= 1"),
            (0 < cfg.inv_tau <= 100, f"inv_tau must be in (0, 100], got {cfg.inv_tau}"),
            (cfg.hopfield_beta is None or cfg.hopfield_beta > 0, "hopfield_beta must be > 0"),
            (cfg.logit_bias is None or math.isfinite(cfg.logit_bias), "logit_bias must be a finite number"),
            (0 <= cfg.val_fraction < 1, "val_fraction must be in [0, 1)"),
            (cfg.lr > 0, "lr must be > 0"),
            (cfg.keep_last >= 1, "keep_last must be >= 1"),
            (cfg.max_skips >= 1, "max_skips must be >= 1"),
            (cfg.schedule != "cosine-restarts" or (cfg.restart_steps or 0) >= 1,
             "schedule cosine-restarts needs restart_steps >= 1"),
            (cfg.warmup_fraction is None or 0 <= cfg.warmup_fraction < 1,
             f"warmup_fraction must be in [0, 1), got {cfg.warmup_fraction}"),
            (cfg.inv_tau_start is None or 0 < cfg.inv_tau_start <= 100,
             f"inv_tau_start must be in (0, 100], got {cfg.inv_tau_start}"),
            (cfg.inv_tau_start is None or not cfg.learn_inv_tau,
             "inv_tau_start schedules inv_tau, so it cannot also be learned: set learn_inv_tau: false"),
            (0 <= cfg.inv_tau_ramp <= 1, f"inv_tau_ramp must be a fraction of the run in [0, 1], got {cfg.inv_tau_ramp}"),
            (cfg.inv_tau_ramp == 0 or cfg.inv_tau_start is not None, "inv_tau_ramp needs inv_tau_start"),
            (cfg.hopfield_beta_start is None or cfg.hopfield_beta_start > 0, "hopfield_beta_start must be > 0"),
            (cfg.hopfield_beta_start is None or not cfg.learn_hopfield_beta,
             "hopfield_beta_start schedules beta, so it cannot also be learned: set learn_hopfield_beta: false"),
            (0 <= cfg.hopfield_beta_ramp <= 1,
             f"hopfield_beta_ramp must be a fraction of the run in [0, 1], got {cfg.hopfield_beta_ramp}"),
            (cfg.hopfield_beta_ramp == 0 or cfg.hopfield_beta_start is not None,
             "hopfield_beta_ramp needs hopfield_beta_start"),
            (0 <= cfg.clip_warm_start < 1, f"clip_warm_start must be a fraction of the run in [0, 1), "
                                            f"got {cfg.clip_warm_start}"),
            (cfg.collapse_warn_steps >= 0, "collapse_warn_steps must be >= 0"),
            (cfg.zeroshot_every >= 0, f"zeroshot_every must be >= 0 (epochs), got {cfg.zeroshot_every}"),
            (min(cfg.max_image_bytes, cfg.max_image_pixels) >= 1, "max_image_bytes and max_image_pixels must be >= 1"),
            (cfg.lock_image_unlocked_groups >= 0, "lock_image_unlocked_groups must be >= 0"),
            (cfg.lock_text_unlocked_layers >= 0, "lock_text_unlocked_layers must be >= 0"),
            (cfg.lock_image or not cfg.lock_image_unlocked_groups, "lock_image_unlocked_groups needs lock_image: true"),
            (cfg.lock_text or not cfg.lock_text_unlocked_layers, "lock_text_unlocked_layers needs lock_text: true"),
            (not cfg.feature_cache or (cfg.lock_image and not cfg.lock_image_unlocked_groups)
             or (cfg.lock_text and not cfg.lock_text_unlocked_layers),
             "feature_cache needs a fully locked tower (lock_image or lock_text with 0 unlocked groups/layers)"),
            (not (cfg.feature_cache and cfg.augment),
             "feature_cache reuses a locked tower's features, so its inputs must repeat exactly: set augment: false"),
        ]
        if cfg.model_config is not None:
            stem = Path(cfg.model_config).stem
            checks.append((Path(cfg.model_config).is_file(), f"model_config {cfg.model_config} does not exist"))
            checks.append((stem == cfg.model, f"model_config registers {stem!r}; set model: {stem}"))
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


def _base_type(name: str):
    hint = _HINTS[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union:
        return args[0], True
    return hint, False


def _check_value(name: str, value, where: str):
    base, optional = _base_type(name)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: {name} must not be null")
    if typing.get_origin(base) in (list, typing.List):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {name} must be a list of strings, got {value!r}")
        return value
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: {name} must be true or false, got {value!r}")
    if base is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: {name} must be an integer, got {value!r}")
    if base in (str, float) and not isinstance(value, base):
        raise ConfigError(f"{where}: {name} must be a {base.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(values: dict, where: str = "config") -> TrainConfig:
    """Build a config from a mapping, refusing unknown keys and wrong types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {type(values).__name__}")
    kwargs = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in FIELDS:
            close = difflib.get_close_matches(name, FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
        kwargs[name] = _check_value(name, value, where)
    return TrainConfig(**kwargs)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return data or {}


# the keys whose meaning a flag name does not say (README has every key)
HELP = {
    "method": "objective: clip (InfoNCE), infoloob, infonce-hopfield, cloob (InfoLOOB + Hopfield), siglip "
              "(SigLIP's sigmoid loss) or siglip-hopfield (sigmoid loss on the Hopfield retrievals)",
    "inv_tau": "1/tau (open_clip's exp(logit_scale)); default 1/0.07 for clip, 10 otherwise",
    "logit_bias": "the sigmoid methods' bias b (default -10, SigLIP's initialisation)",
    "hopfield_beta": "the Hopfield methods' inverse temperature (default 14.3)",
    "precision": "fp32, bf16 (autocast), fp16 (autocast + gradient scaler; CUDA only) or pure_bf16 (bf16 weights)",
    "torch_compile": "none, model (the towers), loss or step (both); a failed compile warns and runs eagerly",
    "adamw": "AdamW implementation: auto (fused on CUDA, foreach elsewhere), fused, foreach or for-loop",
    "pin_memory": "pinned batches and non-blocking host-to-device copies (default: on with CUDA)",
    "clip_warm_start": "fraction of the run trained first with clip's loss (siglip's for siglip-hopfield); "
                       "default 0.5 for the Hopfield methods, 0 otherwise",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per config key; all default to None (= not given)."""
    group = parser.add_argument_group("config keys (override the YAML file)")
    for name in FIELDS:
        flag = "--" + name.replace("_", "-")
        base, _ = _base_type(name)
        helptext = HELP.get(name)
        if base is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        elif typing.get_origin(base) in (list, typing.List):
            group.add_argument(flag, dest=name, action="append", default=None, metavar="SPEC", help=helptext)
        else:
            group.add_argument(flag, dest=name, type=base, default=None, help=helptext)


def build_config(config_file: str | None, args: argparse.Namespace | dict | None = None) -> TrainConfig:
    """YAML file (optional) + command-line overrides -> a resolved, validated config."""
    values = load_yaml(config_file) if config_file else {}
    where = str(config_file) if config_file else "config"
    cfg = from_dict(values, where)
    overrides = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    changes = {k: v for k, v in overrides.items() if k in FIELDS and v is not None}
    if changes:
        cfg = dataclasses.replace(cfg, **{k: _check_value(k, v, "command line") for k, v in changes.items()})
    return cfg.resolved()


def save_yaml(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
