"""Locked towers (cloob.locking) and the feature cache in training: locked weights and BatchNorm
statistics bitwise fixed through the real loop, partial unlocking, config checks, and LiT and CBOW
runs through `cloob train` / `cloob eval` with their checkpoints."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cloob.data.scenes import generate_scenes
from cloob.locking import lock_towers
from cloob.model_source import load_model
from cloob.models import TOWER_CONFIG_DIR, create_model, get_tokenizer, register_model_config
from cloob.towers import TowerCLIP, enable_feature_cache
from cloob import checkpoint as ckpt
from cloob.train.config import ConfigError, build_config
from tower_packages import needs_efficientnet, needs_minilm


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "cache"
    generate_scenes(out, n=96, size=32, n_eval=24, workers=1)
    return out


@pytest.fixture(scope="module")
def small_lit_config(tmp_path_factory):
    """MiniLM + EfficientNet-Lite0 (both pretrained) at 32 px, registered through the model_config key."""
    arch = json.loads((TOWER_CONFIG_DIR / "cloob-minilm-efficientnet-lite0.json").read_text())
    arch["vision_cfg"]["image_size"] = 32
    path = tmp_path_factory.mktemp("arch") / "test-minilm-efficientnet-lite0-32.json"
    path.write_text(json.dumps(arch))
    return path


# ------------------------------------------------------------------ locking ----
def _train(scenes, run_dir, model_config, **over):
    from cloob.train.loop import train

    values = {"train_data": f"scenes:{scenes}", "model": model_config.stem, "model_config": str(model_config),
              "batch_size": 8, "max_steps": 3, "lr": 1e-2, "warmup_steps": 0, "weight_decay": 0.0,
              "run_dir": str(run_dir), "progress": False, "threads": 1, "seed": 0, "log_every": 1}
    values.update(over)
    train(build_config(None, values), log=lambda *_: None)
    return load_file(ckpt.latest_checkpoint(Path(run_dir) / "checkpoints") / "model.safetensors")


def _changed(before: dict, after: dict, prefix: str) -> dict[str, bool]:
    return {k: not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)}


@needs_minilm
@needs_efficientnet
def test_locked_towers_keep_their_weights_and_batchnorm_statistics_while_the_heads_train(
        scenes, tmp_path, small_lit_config):
    register_model_config(small_lit_config)
    start, _, _ = create_model(small_lit_config.stem)
    before = {k: v.clone() for k, v in start.clip.state_dict().items()}
    after = _train(scenes, tmp_path / "run", small_lit_config, lock_image=True, lock_text=True)
    trunk = _changed(before, after, "visual.trunk.")
    assert trunk and not any(trunk.values()), [k for k, v in trunk.items() if v][:5]
    stats = [k for k in trunk if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(stats) == 3 * 49  # every BatchNorm of EfficientNet-Lite0, bitwise fixed
    body = _changed(before, after, "text.transformer.")
    assert body and not any(body.values())
    assert not torch.equal(before["logit_scale"], after["logit_scale"])  # CLIP learns its temperature
    for head in ("visual.head.proj.weight", "text.proj.weight"):
        assert not torch.equal(before[head], after[head]), f"{head} did not train"


@needs_minilm
@needs_efficientnet
def test_unlocked_groups_and_layers_train_only_the_last_ones(scenes, tmp_path, small_lit_config):
    register_model_config(small_lit_config)
    start, _, _ = create_model(small_lit_config.stem)
    before = {k: v.clone() for k, v in start.clip.state_dict().items()}
    after = _train(scenes, tmp_path / "run", small_lit_config, lock_image=True, lock_image_unlocked_groups=1,
                   lock_text=True, lock_text_unlocked_layers=1)
    # timm's last group of EfficientNet-Lite0: the last block, conv_head and its BatchNorm (open_clip's grouping)
    last = _changed(before, after, "visual.trunk.conv_head.") | _changed(before, after, "visual.trunk.bn2.") \
        | _changed(before, after, "visual.trunk.blocks.6.")
    earlier = {k: v for k, v in _changed(before, after, "visual.trunk.").items() if k not in last}
    assert all(v for k, v in last.items() if k.endswith(("weight", "running_mean"))), last
    assert earlier and not any(earlier.values()), [k for k, v in earlier.items() if v][:5]
    text_last = _changed(before, after, "text.transformer.encoder.layer.5.")
    text_rest = {k: v for k, v in _changed(before, after, "text.transformer.").items() if k not in text_last}
    assert text_last and all(v for k, v in text_last.items() if k.endswith("weight")), text_last
    assert text_rest and not any(text_rest.values())


def test_a_locked_resnet_keeps_its_batchnorm_statistics_and_trains_its_projection():
    """The loop calls model.train(); the locked ModifiedResNet must stay in eval mode (its statistics fixed)."""
    from cloob.losses import clip_loss

    torch.manual_seed(0)
    model, _, _ = create_model("cloob-rn-tiny")
    lock_towers(model, lock_image=True)
    before = {k: v.clone() for k, v in model.clip.visual.state_dict().items()}
    model.train()
    assert model.clip.visual.layer1.training is False and model.clip.transformer.training is True
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    tokens = get_tokenizer("cloob-rn-tiny")([f"caption {i}" for i in range(4)])
    for _ in range(2):
        x, y = model(torch.randn(4, 3, 64, 64), tokens)
        clip_loss(x, y, model.inv_tau).backward()
        opt.step()
        opt.zero_grad()
    after = model.clip.visual.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["attnpool.c_proj.bias", "attnpool.c_proj.weight"]


def test_feature_cache_is_refused_with_augmentation_or_without_a_fully_locked_tower():
    base = {"train_data": "scenes:x", "model": "cloob-minilm-rn-tiny", "feature_cache": True}
    with pytest.raises(ConfigError, match="fully locked tower"):
        build_config(None, base)
    with pytest.raises(ConfigError, match="fully locked tower"):
        build_config(None, {**base, "lock_text": True, "lock_text_unlocked_layers": 2})
    with pytest.raises(ConfigError, match="augment: false"):
        build_config(None, {**base, "lock_text": True, "augment": True})
    with pytest.raises(ConfigError, match="needs lock_image"):
        build_config(None, {"train_data": "scenes:x", "lock_image_unlocked_groups": 1})
    model, _, _ = create_model("cloob-cbow-rn-tiny")
    with pytest.raises(ValueError, match="no locked body"):
        enable_feature_cache(model.clip, image=True, text=False)


# ------------------------------------------------------------------ runs and checkpoints ----
@pytest.mark.slow
@needs_minilm
def test_lit_and_cbow_runs_train_from_the_cli_and_evaluate_from_their_checkpoints(scenes, tmp_path):
    """LiT (locked MiniLM, cached text features) and CBOW, through `cloob train` and `cloob eval`."""
    runs = {
        "lit": ["--model", "cloob-minilm-rn-tiny", "--lock-text", "--feature-cache"],
        "cbow": ["--model", "cloob-cbow-rn-tiny"],
    }
    for name, extra in runs.items():
        run_dir = tmp_path / name
        train = subprocess.run([sys.executable, "-m", "cloob.cli", "train", "--train-data", f"scenes:{scenes}",
                                "--batch-size", "16", "--max-steps", "4", "--run-dir", str(run_dir), "--threads", "1",
                                "--no-progress", *extra], capture_output=True, text=True, timeout=600)
        assert train.returncode == 0, train.stderr[-3000:]
        if name == "lit":
            assert "feature cache: text" in train.stdout
        evaluation = subprocess.run([sys.executable, "-m", "cloob.cli", "eval", "zeroshot", "--checkpoint",
                                     str(run_dir), "--dataset", f"scenes-scene:{scenes}"],
                                    capture_output=True, text=True, timeout=600)
        assert evaluation.returncode == 0, evaluation.stderr[-3000:]
        result = json.loads(next((run_dir / "eval").glob("zeroshot-*.json")).read_text())
        assert result["model"] == runs[name][1] and 0 <= result["metrics"]["top1"] <= 1
        # the checkpoint rebuilds the same weights (the pretrained tower from the package, then the saved state)
        model, meta = load_model(run_dir)
        assert isinstance(model.clip, TowerCLIP)
        saved = load_file(ckpt.resolve_checkpoint(run_dir) / "model.safetensors")
        assert all(torch.equal(v, saved[k]) for k, v in model.clip.state_dict().items())
        assert math.isfinite(meta["inv_tau"])
