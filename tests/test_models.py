import math

import open_clip
import pytest
import torch

from cloob.models import (
    SMALL_MODELS,
    ContrastiveModel,
    count_parameters,
    create_model,
    get_tokenizer,
    list_models,
    visual_image_size,
)


def test_small_configs_are_registered_with_open_clip_itself():
    assert set(SMALL_MODELS) >= {"cloob-rn-tiny", "cloob-vit-tiny"}
    for name in SMALL_MODELS:
        assert name in open_clip.list_models()
        # open_clip's own factory builds them by name
        clip = open_clip.create_model(name)
        assert 32 <= visual_image_size(clip) <= 64
        assert clip.context_length <= 32
    assert {"RN50", "RN101", "RN50x4", "ViT-B-32"} <= set(list_models())


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_small_models_encode_to_unit_vectors(name):
    torch.manual_seed(0)
    model, train_tf, eval_tf = create_model(name, hopfield_beta=8.0)
    size = model.image_size
    tokens = get_tokenizer(name)(["a large red circle left of a small blue star", "a cup"])
    assert tokens.shape == (2, model.context_length)
    with torch.no_grad():
        x = model.encode_image(torch.randn(2, 3, size, size))
        y = model.encode_text(tokens)
    dim = model.clip.text_projection.shape[1]
    assert x.shape == y.shape == (2, dim)
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(2))
    counts = count_parameters(model)
    print(f"{name}: {counts}")
    assert counts["total"] == counts["image"] + counts["text"] > 0


@pytest.mark.slow
def test_rn50_is_creatable_by_name_with_random_init():
    model, _, _ = create_model("RN50")
    with torch.no_grad():
        x = model.encode_image(torch.randn(1, 3, 224, 224))
    assert x.shape == (1, 1024)
    counts = count_parameters(model)
    print(f"RN50: {counts}")
    assert 100e6 < counts["total"] < 110e6  # open_clip's RN50 CLIP: ~102M


def test_inv_tau_is_exp_parametrised_learnable_or_fixed_and_clamped():
    model, _, _ = create_model("cloob-rn-tiny", inv_tau=30.0, learn_inv_tau=False)
    assert math.isclose(model.inv_tau.item(), 30.0, rel_tol=1e-5)
    assert not model.clip.logit_scale.requires_grad
    model, _, _ = create_model("cloob-rn-tiny")
    assert model.clip.logit_scale.requires_grad
    assert math.isclose(model.inv_tau.item(), 1 / 0.07, rel_tol=1e-5)
    with torch.no_grad():
        model.clip.logit_scale.fill_(math.log(500.0))
    assert model.inv_tau.item() == 100.0
    with pytest.raises(ValueError, match="inv_tau"):
        create_model("cloob-rn-tiny", inv_tau=150.0)


def test_hopfield_beta_only_for_hopfield_models():
    plain, _, _ = create_model("cloob-rn-tiny")
    assert plain.hopfield_beta is None
    hop, _, _ = create_model("cloob-rn-tiny", hopfield_beta=14.3, learn_hopfield_beta=True)
    assert math.isclose(hop.hopfield_beta.item(), 14.3, rel_tol=1e-5)
    assert hop.hopfield.log_beta.requires_grad


def test_unknown_model_and_non_local_pretrained_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model"):
        create_model("no-such-model")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        create_model("cloob-rn-tiny", pretrained="openai")


def test_unknown_model_error_names_the_closest_registered_names_and_cloob_info():
    from cloob.models import UnknownModelError

    with pytest.raises(UnknownModelError) as e:
        create_model("vit-b-32")
    msg = str(e.value)
    assert msg.startswith("unknown model 'vit-b-32'; closest registered names: ") and "\n" not in msg
    assert "ViT-B-32" in msg.split(";")[1] and msg.endswith("`cloob info` lists them all")


def test_random_init_prints_no_open_clip_warning_and_leaves_logging_unconfigured():
    import subprocess
    import sys

    code = ("import logging; from cloob.models import create_model; create_model('cloob-rn-tiny'); "
            "print(len(logging.getLogger().handlers))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stderr == "", out.stderr  # no "No pretrained weights loaded"
    assert out.stdout.strip() == "0"  # open_clip's logging.warning would have called basicConfig


def test_pretrained_local_checkpoint_in_open_clip_format_loads(tmp_path):
    torch.manual_seed(1)
    a, _, _ = create_model("cloob-rn-tiny")
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": a.clip.state_dict()}, path)
    torch.manual_seed(2)
    b, _, _ = create_model("cloob-rn-tiny", pretrained=str(path))
    for (k, v), (_, w) in zip(a.clip.state_dict().items(), b.clip.state_dict().items()):
        assert torch.equal(v, w), k
    assert isinstance(b, ContrastiveModel)


@pytest.mark.parametrize("name", ["cloob-rn-tiny", "cloob-vit-tiny", "RN50"])
def test_truncated_text_encoding_equals_open_clips_full_context(name):
    torch.manual_seed(0)
    model, _, _ = create_model(name)
    assert model.truncate_text
    tokens = get_tokenizer(name)(["a cup", "a large red circle left of a small blue star, in the harbor", "x " * 40])
    with torch.no_grad():
        ours = model.encode_text(tokens)
        theirs = model.clip.encode_text(tokens, normalize=True)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_channels_last_resnet_gives_open_clips_image_features():
    torch.manual_seed(0)
    model, _, _ = create_model("cloob-rn-tiny")
    model.eval()
    assert model.channels_last
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        ours = model.encode_image(images)
        theirs = model.clip.encode_image(images.contiguous(), normalize=True)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
