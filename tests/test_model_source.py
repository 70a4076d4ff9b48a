"""Every model source of cloob.model_source gives the source model's features.

Each checkpoint format is fabricated here from an open_clip model, in the layout its publisher writes:
open_clip's ``epoch_N.pt`` (DDP ``module.`` prefix), OpenAI's state dict and TorchScript archive, and
the CLOOB reference repository's ``CLIPGeneral`` checkpoint (ml-jku/cloob, src/training/main.py).
The reference for "same features" is the open_clip model the file was made from.
"""
from __future__ import annotations

import io
import pickle
import warnings
import zipfile

import open_clip
import pytest
import torch

import cloob.models  # noqa: F401 - registers cloob's model configs with open_clip
from cloob.checkpoint import CheckpointError
from cloob.model_source import convert, guess_models, load_model, read_weights
from cloob.weights import save_safetensors

NAME = "cloob-rn-tiny"


def _source(quick_gelu: bool, seed: int = 0):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = open_clip.create_model(NAME, force_quick_gelu=quick_gelu).eval()
    with torch.no_grad():
        m.logit_scale.fill_(2.5)
        for b in m.modules():  # non-trivial BatchNorm statistics, so that buffers matter
            if isinstance(b, torch.nn.BatchNorm2d):
                b.running_mean.uniform_(-0.5, 0.5)
                b.running_var.uniform_(0.5, 1.5)
    return m


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(1)
    images = torch.randn(3, 3, 64, 64)
    tokens = open_clip.get_tokenizer(NAME)(["a red square", "two blue circles", "a photo of a dog"])
    return images, tokens


def _same_features(model, source, batch):
    images, tokens = batch
    with torch.no_grad():
        want_i = torch.nn.functional.normalize(source.encode_image(images), dim=-1)
        want_t = torch.nn.functional.normalize(source.encode_text(tokens), dim=-1)
        got_i, got_t = model.encode_image(images), model.encode_text(tokens)
    assert torch.allclose(got_i, want_i, atol=1e-5), (got_i - want_i).abs().max()
    assert torch.allclose(got_t, want_t, atol=1e-5), (got_t - want_t).abs().max()
    assert float(model.inv_tau.detach()) == pytest.approx(float(source.logit_scale.detach().exp()), rel=1e-6)


def _openai_state(source) -> dict:
    # OpenAI's files carry three ints as tensors beside the weights (their clip.model.build_model deletes them)
    state = dict(source.state_dict())
    state.update(input_resolution=torch.tensor(64), context_length=torch.tensor(24), vocab_size=torch.tensor(49408))
    return state


def _reference_state(source) -> dict:
    """open_clip (= OpenAI) keys -> the reference repository's CLIPGeneral keys, DDP-prefixed."""
    out = {}
    for k, v in source.state_dict().items():
        if k.startswith("visual."):
            key = k
        elif k == "logit_scale":
            key = "logit_inv_tau"
        elif k.startswith("transformer."):
            key = f"transformer.{k}"  # transformer.resblocks -> transformer.transformer.resblocks
        else:
            key = f"transformer.{k}"  # token_embedding, positional_embedding, ln_final, text_projection
        out[f"module.{key}"] = v
    out["module.logit_scale_hopfield"] = torch.tensor(2.0)
    return out


def test_open_clip_epoch_checkpoint_with_module_prefix(tmp_path, batch):
    source = _source(False)
    path = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]}}, path)
    model, meta = load_model(path, NAME)
    assert (meta["format"], meta["epoch"], meta["model"]) == ("open_clip_train", 3, NAME)
    _same_features(model, source, batch)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_plain_state_dict_needs_model_name(tmp_path, batch, suffix):
    source = _source(False)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_safetensors({k: v.contiguous() for k, v in source.state_dict().items()}, path)
    else:
        torch.save(source.state_dict(), path)
    model, meta = load_model(path, NAME)
    assert meta["format"] == "open_clip"
    _same_features(model, source, batch)
    with pytest.raises(CheckpointError, match="--model NAME; likely --model cloob-rn-tiny") as e:
        load_model(path)
    assert "\n" not in str(e.value)


def test_openai_state_dict_guesses_its_quickgelu_architecture(tmp_path, batch):
    source = _source(True)
    path = tmp_path / "openai.pt"
    torch.save(_openai_state(source), path)
    assert read_weights(path).format == "openai"
    model, meta = load_model(path)  # no --model: read off the shapes, QuickGELU as OpenAI's
    assert meta["model"] == f"{NAME}-quickgelu" and meta["format"] == "openai"
    _same_features(model, source, batch)
    model2, meta2 = load_model(path, NAME)  # a GELU --model is switched to its QuickGELU variant
    assert meta2["model"] == f"{NAME}-quickgelu"
    _same_features(model2, source, batch)


def test_openai_fp16_state_dict_evaluates_in_fp32(tmp_path, batch):
    source = _source(True)
    half = {k: v.half() if v.is_floating_point() and k not in ("logit_scale",) else v
            for k, v in _openai_state(source).items()}
    torch.save(half, tmp_path / "fp16.pt")
    with torch.no_grad():  # the reference: the same model with its weights rounded to fp16
        for k, p in source.state_dict().items():
            if k in half and p.is_floating_point():
                p.copy_(half[k].float())
    model, _ = load_model(tmp_path / "fp16.pt")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    _same_features(model, source, batch)


def test_torchscript_archive_is_read_without_running_it(tmp_path, batch):
    source = _source(True)
    scripted = _source(True)
    # as in OpenAI's released archives (open_clip's CLIP already has int attributes named like the other two)
    scripted.register_buffer("input_resolution", torch.tensor(64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(scripted).save(str(tmp_path / "ViT-like.pt"))
    w = read_weights(tmp_path / "ViT-like.pt")
    assert w.format == "openai" and "input_resolution" not in w.state and "attn_mask" in w.state
    model, meta = load_model(tmp_path / "ViT-like.pt")
    assert meta["model"] == f"{NAME}-quickgelu"
    _same_features(model, source, batch)


def test_torchscript_archive_naming_other_code_is_refused(tmp_path):
    evil = io.BytesIO()
    pickle.dump(print, evil, protocol=2)  # data.pkl naming builtins.print: never called, refused
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as z:
        z.writestr("evil/data.pkl", evil.getvalue())
        z.writestr("evil/code/__torch__/m.py", "class M(Module):\n  __parameters__ = []\n")
    with pytest.raises(CheckpointError, match="names __builtin__.print, which cloob does not load") as e:
        load_model(tmp_path / "evil.pt", NAME)
    assert "\n" not in str(e.value)


def test_reference_repository_checkpoint(tmp_path, batch):
    source = _source(True)
    path = tmp_path / "cloob_rn_tiny_epoch_28.pt"
    torch.save({"epoch": 28, "name": "cloob-run", "model_config_file": f"{NAME}.json",
                "state_dict": _reference_state(source),
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]}}, path)
    w = read_weights(path)
    assert w.format == "reference" and w.info["hopfield_beta"] == pytest.approx(float(torch.tensor(2.0).exp()))
    model, meta = load_model(path)
    assert (meta["model"], meta["epoch"]) == (f"{NAME}-quickgelu", 28)
    _same_features(model, source, batch)
    # converted, it is an ordinary cloob checkpoint with the same features
    ckpt = convert(path, tmp_path / "converted")
    assert ckpt.parent.name == "checkpoints" and ckpt.name == "step-00000028"
    model2, meta2 = load_model(tmp_path / "converted")
    assert meta2["format"] == "cloob" and meta2["source"]["format"] == "reference"
    _same_features(model2, source, batch)


def test_mismatched_architecture_is_one_line_with_the_likely_model(tmp_path):
    source = _source(False)
    torch.save(source.state_dict(), tmp_path / "rn.pt")
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "rn.pt", "cloob-vit-tiny")
    msg = str(e.value)
    assert "\n" not in msg and "missing keys" in msg and "unexpected keys" in msg
    assert "likely --model cloob-rn-tiny" in msg
    assert guess_models(source.state_dict())[0].startswith(NAME)


def test_damaged_file_is_one_line(tmp_path):
    source = _source(False)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "cut.pt", NAME)
    assert "\n" not in str(e.value) and "cut.pt" in str(e.value)
    with pytest.raises(CheckpointError, match="no model source"):
        load_model(tmp_path / "missing.pt", NAME)
