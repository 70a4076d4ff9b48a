"""`cloob train --method siglip | siglip-hopfield`: defaults, the learned bias, its warm start, checkpoints."""
import json
import math
import subprocess
import sys

import pytest

from cloob.data.scenes import generate_scenes
from cloob.train.config import ConfigError, build_config

MODEL = "cloob-vit-tiny"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "cache"
    generate_scenes(out, n=96, size=32, n_eval=24, workers=1)
    return out


def test_sigmoid_defaults_are_siglips_and_the_bias_belongs_to_them():
    cfg = build_config(None, {"train_data": "x", "method": "siglip"})
    # t' = log 10 (inv_tau 10) and b = -10, both learned (Zhai et al. 2023); no Hopfield, no warm start
    assert (cfg.inv_tau, cfg.learn_inv_tau, cfg.logit_bias, cfg.learn_logit_bias) == (10.0, True, -10.0, True)
    assert cfg.hopfield_beta is None and cfg.clip_warm_start == 0.0
    cfg = build_config(None, {"train_data": "x", "method": "siglip-hopfield"})
    assert (cfg.logit_bias, cfg.hopfield_beta, cfg.clip_warm_start) == (-10.0, 14.3, 0.5)
    with pytest.raises(ConfigError, match="logit_bias"):
        build_config(None, {"train_data": "x", "method": "clip", "logit_bias": -10.0})


def test_help_lists_both_sigmoid_methods():
    out = subprocess.run([sys.executable, "-m", "cloob.cli", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "siglip-hopfield" in out.stdout and "--logit-bias" in out.stdout


def test_siglip_hopfield_trains_its_bias_after_a_siglip_warm_start_and_reloads(scenes, tmp_path):
    from cloob.model_source import load_model
    from cloob.train import loop

    run_dir = tmp_path / "run"
    cfg = build_config(None, {"train_data": f"scenes:{scenes}", "model": MODEL, "method": "siglip-hopfield",
                              "batch_size": 16, "max_steps": 4, "lr": 1e-3, "log_every": 1, "run_dir": str(run_dir),
                              "progress": False, "threads": 1, "clip_warm_start": 0.5, "collapse_warn_steps": 2})
    loop.train(cfg, log=lambda *_: None)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    # the warm start is SigLIP's loss without retrieval; the bias is trained in every step
    assert [r.get("objective") for r in rows] == ["siglip", "siglip", None, None]
    biases = [r["logit_bias"] for r in rows]
    assert biases[0] != -10.0 and len(set(biases)) == 4
    for r in rows:
        assert math.isfinite(r["loss_gap_nats"]) and "cos/x" in r
    assert "eff_patterns/U_x" in rows[-1]  # the Hopfield diagnostics once the retrieval is on
    model, meta = load_model(run_dir)
    assert meta["method"] == "siglip-hopfield"
    assert float(model.logit_bias.detach()) == pytest.approx(biases[-1], abs=1e-6)
    assert float(model.hopfield_beta) == pytest.approx(14.3, rel=1e-6)
