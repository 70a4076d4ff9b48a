"""Model sources: every kind of weights the evaluations accept, read through one resolver.

=========================================  =================================================  ==============
source                                     recognised by                                      ``--model``
=========================================  =================================================  ==============
cloob run or checkpoint directory          ``meta.json`` / ``checkpoints/step-*``             recorded
state dict (``.safetensors``, ``.pt``)     a flat dict of tensors in open_clip's key names     required
open_clip training checkpoint              ``{"epoch", "state_dict"}``, keys maybe ``module.``  required
OpenAI CLIP file                           a TorchScript archive, or a state dict with         guessed
                                           ``input_resolution``/``context_length``/``vocab_size``
CLOOB reference checkpoint (ml-jku/cloob)  ``{"state_dict"}`` with ``transformer.transformer.*``  guessed
                                           and ``logit_inv_tau`` keys, ``model_config_file``
=========================================  =================================================  ==============

OpenAI's files and the reference repository's (whose ``CLIPGeneral`` is OpenAI's CLIP with the text
tower one level down, ``src/clip/model.py``) hold OpenAI's architecture, QuickGELU included: their
weights load into open_clip's ``<name>-quickgelu`` configs, and a ``--model`` without QuickGELU is
switched to its QuickGELU variant (registered here when open_clip has none). Without ``--model`` the
architecture is read off the tensor shapes, as open_clip's ``build_model_from_openai_state_dict``
does, and matched against the registered configs.

Nothing here executes pickled code: torch files load with ``weights_only=True`` and TorchScript
archives through :func:`cloob.weights.load_torchscript_state`.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cloob.checkpoint import (CheckpointError, file_digest, load_model_state, load_train_state, read_meta,
                              resolve_checkpoint, save_checkpoint)
from cloob.weights import is_torchscript, load_torchscript_state, safe_torch_load

log = logging.getLogger("cloob.model_source")
FORMATS = ("cloob", "open_clip", "open_clip_train", "openai", "reference")  # open_clip: a bare state dict
OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")  # ints stored as tensors in OpenAI's files


@dataclass
class Weights:
    """An external weights file read into open_clip's key names.

    format: one of :data:`FORMATS` (not "cloob"); state: open_clip state dict (fp32 floats);
    info: what the file says beside the weights (epoch, run name, the reference model config file).
    """

    path: Path
    format: str
    state: dict[str, torch.Tensor]
    info: dict = field(default_factory=dict)


def _strip_module(state: dict) -> dict:
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _reference_to_open_clip(state: dict) -> tuple[dict, dict]:
    """The reference repository's CLIPGeneral keys -> open_clip's (OpenAI's) keys; returns (state, dropped).

    CLIPGeneral keeps the text tower under ``transformer`` (``transformer.transformer.resblocks``,
    ``transformer.token_embedding``, ...) and the temperature as ``logit_inv_tau`` (log 1/tau, what
    open_clip calls ``logit_scale``); its Hopfield β (``logit_scale_hopfield``) is no model weight.
    """
    out, dropped = {}, {}
    for k, v in state.items():
        if k == "logit_scale_hopfield":
            dropped[k] = v
        elif k == "logit_inv_tau":
            out["logit_scale"] = v
        elif k.startswith("transformer.transformer."):
            out[k[len("transformer."):]] = v
        elif k.startswith("transformer."):
            out[k[len("transformer."):]] = v
        else:
            out[k] = v
    return out, dropped


def read_weights(path: str | Path) -> Weights:
    """Read an external weights file (any row of the module table but the first) safely."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        from cloob.weights import load_state_dict_file

        return Weights(path, "open_clip", _as_float(load_state_dict_file(path)))
    if is_torchscript(path):
        state = load_torchscript_state(path)
        return Weights(path, "openai", _as_float({k: v for k, v in state.items() if k not in OPENAI_EXTRAS}),
                       {"torchscript": True})
    obj = safe_torch_load(path)
    info = {}
    if isinstance(obj, dict) and "state_dict" in obj:
        info = {k: obj[k] for k in ("epoch", "name", "model_config_file") if isinstance(obj.get(k), (int, str))}
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors (nor {{'state_dict': ...}})")
    state = _strip_module(obj)
    if "model_config_file" in info or "logit_inv_tau" in state or any(
            k.startswith("transformer.transformer.") for k in state):
        state, dropped = _reference_to_open_clip(state)
        if "logit_scale_hopfield" in dropped:
            info["hopfield_beta"] = float(dropped["logit_scale_hopfield"].float().exp())
        fmt = "reference"
    elif any(k in state for k in OPENAI_EXTRAS):
        state, fmt = {k: v for k, v in state.items() if k not in OPENAI_EXTRAS}, "openai"
    else:
        fmt = "open_clip_train" if "epoch" in info else "open_clip"
    return Weights(path, fmt, _as_float(state), info)


def _as_float(state: dict) -> dict:
    # OpenAI's and the reference's weights are partly fp16: evaluate in fp32, as open_clip does on CPU
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


# ------------------------------------------------------------------ architecture from shapes
def _count(state: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.match(k))})


def shape_signature(state: dict) -> tuple | None:
    """(embed_dim, vision (kind, layers, width, patch, image size), text (width, layers, context, vocab)) of an
    OpenAI-layout state dict (open_clip's CLIP keys), or None when the keys are not that layout."""
    try:
        if "visual.conv1.weight" in state and "visual.class_embedding" in state:
            w = state["visual.conv1.weight"]
            grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
            vision = ("vit", _count(state, r"visual\.transformer\.resblocks\.(\d+)\."), w.shape[0], w.shape[-1],
                      w.shape[-1] * grid)
        elif "visual.layer1.0.conv1.weight" in state:
            layers = tuple(_count(state, rf"visual\.layer{b}\.(\d+)\.") for b in (1, 2, 3, 4))
            grid = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
            vision = ("resnet", layers, state["visual.layer1.0.conv1.weight"].shape[0], None, grid * 32)
        else:
            return None
        text = (state["ln_final.weight"].shape[0], _count(state, r"transformer\.resblocks\.(\d+)\."),
                state["positional_embedding"].shape[0], state["token_embedding.weight"].shape[0])
        return state["text_projection"].shape[1], vision, text
    except KeyError:
        return None


def config_signature(cfg: dict) -> tuple | None:
    """The :func:`shape_signature` an open_clip model config (JSON dict) would have; None for timm/HF towers."""
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if "timm_model_name" in v or "hf_model_name" in t or cfg.get("custom_text") or "tower" in cfg:
        return None
    try:
        v, t = CLIPVisionCfg(**v), CLIPTextCfg(**t)
    except TypeError:
        return None
    size = v.image_size if isinstance(v.image_size, int) else v.image_size[0]
    if isinstance(v.layers, (tuple, list)):
        vision = ("resnet", tuple(v.layers), v.width, None, size)
    else:
        vision = ("vit", v.layers, v.width, v.patch_size, size)
    return cfg["embed_dim"], vision, (t.width, t.layers, t.context_length, t.vocab_size)


def guess_models(state: dict, quick_gelu: bool | None = None) -> list[str]:
    """Registered model names whose shapes fit ``state`` (OpenAI layout); those with ``quick_gelu``
    equal to the argument first (None: no preference)."""
    import open_clip

    want = shape_signature(state)
    if want is None:
        return []
    fits = [n for n in open_clip.list_models() if config_signature(open_clip.get_model_config(n) or {}) == want]
    if quick_gelu is not None:
        fits.sort(key=lambda n: bool(open_clip.get_model_config(n).get("quick_gelu")) != quick_gelu)
    return fits


def _quick_gelu_variant(name: str) -> str:
    """``name`` if it uses QuickGELU, else its QuickGELU variant, registered on the fly when open_clip has none."""
    import json
    import tempfile

    import open_clip

    from cloob.models import register_model_config

    cfg = open_clip.get_model_config(name)
    if cfg.get("quick_gelu"):
        return name
    variant = f"{name}-quickgelu"
    if variant not in open_clip.list_models():
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / f"{variant}.json").write_text(json.dumps({**cfg, "quick_gelu": True}))
            register_model_config(Path(tmp) / f"{variant}.json")
    return variant


def _choose_model(weights: Weights, model_name: str | None) -> str:
    from cloob.models import check_model_name

    openai_arch = weights.format in ("openai", "reference")
    if model_name is None and weights.format == "reference" and weights.info.get("model_config_file"):
        model_name = Path(str(weights.info["model_config_file"])).stem  # "RN50.json" -> RN50
        try:
            check_model_name(model_name)
        except ValueError:
            model_name = None
    if model_name is None:
        if not openai_arch:
            likely = guess_models(weights.state)
            kind = "an open_clip training checkpoint" if weights.format == "open_clip_train" else "a state dict"
            raise CheckpointError(f"{weights.path} is {kind}: name its "
                                  f"architecture with --model NAME{_likely(likely)} (`cloob info` lists them)")
        likely = guess_models(weights.state, quick_gelu=True)
        if not likely:
            raise CheckpointError(f"{weights.path}: no registered architecture has these tensor shapes; "
                                  "register one (a model_config JSON) and pass --model NAME")
        model_name = likely[0]
    check_model_name(model_name)
    return _quick_gelu_variant(model_name) if openai_arch else model_name


def _likely(names: list[str]) -> str:
    return f"; likely --model {', '.join(names[:4])}" if names else ""


def load_into(clip: torch.nn.Module, state: dict, source: str, model_name: str) -> None:
    """``clip.load_state_dict(state)`` with one line naming missing, unexpected and misshapen keys on a mismatch."""
    expected = clip.state_dict()
    persistent = set(expected)
    transient = {n for n, _ in clip.named_buffers()} - persistent  # e.g. open_clip's attn_mask
    state = {k: v for k, v in state.items() if k not in transient}
    missing = sorted(persistent - set(state))
    unexpected = sorted(set(state) - persistent)
    misshapen = sorted(k for k in persistent & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or misshapen:
        def few(keys):
            return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

        parts = [f"{len(ks)} {what}: {few(ks)}" for what, ks in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("keys of another shape", misshapen)) if ks]
        raise CheckpointError(f"{source} does not fit --model {model_name}: {'; '.join(parts)}"
                              f"{_likely([n for n in guess_models(state, True) if n != model_name])}")
    clip.load_state_dict(state)


# ------------------------------------------------------------------ the resolver
def load_model(source: str | Path, model_name: str | None = None, device: str | torch.device = "cpu",
               warn=log.warning):
    """Any model source -> (:class:`~cloob.models.ContrastiveModel` in eval mode, meta dict).

    Args:
        source: a cloob run or checkpoint directory, or a weights file (see the module table).
        model_name: the open_clip architecture of a weights file; for a cloob checkpoint None or
            its own model name.
        warn: receives a line for each damaged cloob checkpoint skipped.
    Returns:
        meta: ``model``, ``checkpoint`` (the directory or file read), ``format``, ``step``,
        ``method`` and, for cloob checkpoints, everything their meta.json records; for files
        also ``sha256`` and ``epoch`` where known.
    Raises:
        CheckpointError: one line (a damaged file, a mismatched architecture with the likely --model).
    """
    path = Path(source)
    if path.is_dir():
        model, meta = _load_cloob(path, device, warn)
        if model_name is not None and model_name != meta["model"]:
            raise CheckpointError(f"--model {model_name} differs from the checkpoint's model {meta['model']} "
                                  f"({meta['checkpoint']}); leave --model out for a cloob checkpoint")
        return model, meta
    if not path.exists():
        raise CheckpointError(f"no model source at {path} (expected a cloob run or checkpoint directory, or a "
                              "weights file: .safetensors, .pt, an OpenAI CLIP file or a reference checkpoint)")
    from cloob.models import create_model

    weights = read_weights(path)
    name = _choose_model(weights, model_name)
    bias = weights.state.get("logit_bias")  # a SigLIP model's b
    model, _, _ = create_model(name, inv_tau=1.0, device="cpu", logit_bias=None if bias is None else float(bias))
    load_into(model.clip, weights.state, str(path), name)
    model.to(device).eval()
    meta = {"model": name, "checkpoint": str(path), "format": weights.format, "step": None,
            "method": None, "sha256": file_digest(path)["sha256"], **weights.info}
    return model, meta


def _load_cloob(path: Path, device, warn):
    """A cloob checkpoint (or a run's newest intact one), as :func:`load_model` returns it."""
    from cloob.models import create_model, list_models, register_model_config

    ckpt = resolve_checkpoint(path, warn)
    meta = read_meta(ckpt)
    arch = ckpt / "model_config.json"
    if arch.is_file() and meta["model"] not in list_models():
        # an architecture registered only for training (model_config): rebuild it from the checkpoint
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            named = Path(tmp) / f"{meta['model']}.json"
            named.write_text(arch.read_text())
            register_model_config(named)
    state = load_model_state(ckpt)
    bias = state.get("logit_bias")  # the sigmoid methods' b
    model, _, _ = create_model(meta["model"], inv_tau=1.0, hopfield_beta=meta.get("hopfield_beta"), device=device,
                               logit_bias=None if bias is None else float(bias))
    model.clip.load_state_dict(state)
    extras = load_train_state(ckpt).get("extras", {})
    if model.hopfield is not None and "log_beta" in extras:
        with torch.no_grad():
            model.hopfield.log_beta.copy_(extras["log_beta"])
    model.eval()
    meta["checkpoint"] = str(ckpt)
    meta.setdefault("format", "cloob")
    return model, meta


def convert(source: str | Path, out: str | Path, model_name: str | None = None) -> Path:
    """Write any model source as a cloob checkpoint under ``out`` (a run-like directory); returns the checkpoint.

    The checkpoint is ``out/checkpoints/step-<N>/`` (N: the source's step, or its epoch, else 0) with
    ``model.safetensors`` (open_clip's state dict), ``model_config.json``, a minimal ``state.pt`` and
    ``meta.json`` naming the source file, its format and sha256. Every eval command reads ``out``.
    """
    import open_clip

    model, meta = load_model(source, model_name)
    step = int(meta.get("step") or meta.get("epoch") or 0)
    keep = ("format", "sha256", "epoch", "name", "model_config_file", "hopfield_beta", "method", "config")
    record = {"model": meta["model"], "method": meta.get("method"), "step": step,
              "source": {"path": str(Path(source).resolve()), **{k: meta[k] for k in keep if k in meta}},
              "inv_tau": float(model.inv_tau.detach())}
    extras = {}
    if model.hopfield is not None:
        record["hopfield_beta"] = float(model.hopfield_beta.detach())
        extras["log_beta"] = model.hopfield.log_beta.detach().clone()
    return save_checkpoint(Path(out) / "checkpoints", step, model.clip.state_dict(), {"extras": extras}, record,
                           model_config=open_clip.get_model_config(meta["model"]))
