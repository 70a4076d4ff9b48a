"""scripts/warm_start_switch.py: the sigmoid loss split into matched and unmatched terms, checked against a
loop over the formula and against the library's own loss on the same batch."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from scripts_loader import load_script

sw = load_script("warm_start_switch")


def _softplus(u: float) -> float:
    return math.log1p(math.exp(-abs(u))) + max(u, 0.0)


def test_pair_stats_matches_a_loop_over_the_formula():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(7, 5, generator=g), dim=-1)
    s = F.normalize(torch.randn(7, 5, generator=g), dim=-1)
    t, b = 9.5, -8.0
    got = sw.pair_stats(a, s, t, b)
    n = len(a)
    cos = [[sum(a[i, k].item() * s[j, k].item() for k in range(5)) for j in range(n)] for i in range(n)]
    matched = sum(cos[i][i] for i in range(n)) / n
    unmatched = sum(cos[i][j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    m_term = sum(_softplus(-(t * cos[i][i] + b)) for i in range(n)) / n
    u_term = sum(_softplus(t * cos[i][j] + b) for i in range(n) for j in range(n) if i != j) / n
    assert got["matched_cos"] == pytest.approx(matched, abs=1e-6)
    assert got["unmatched_cos"] == pytest.approx(unmatched, abs=1e-6)
    assert got["matched_term"] == pytest.approx(m_term, rel=1e-5)
    assert got["unmatched_term"] == pytest.approx(u_term, rel=1e-5)
    assert "matched_term" not in sw.pair_stats(a, s, t, None)  # softmax objectives: cosines only


@pytest.fixture(scope="module")
def siglip_hopfield_checkpoint(tmp_path_factory):
    from cloob.checkpoint import save_checkpoint
    from cloob.data.scenes import generate_scenes
    from cloob.models import create_model

    root = tmp_path_factory.mktemp("switch")
    generate_scenes(root / "scenes", n=16, size=32, n_eval=8, workers=1)
    torch.manual_seed(0)
    model, _, _ = create_model("cloob-rn-tiny", inv_tau=10.0, hopfield_beta=14.3, logit_bias=-10.0)
    run = root / "run"
    run.mkdir()
    (run / "config.yaml").write_text("method: siglip-hopfield\nseed: 0\nmodel: cloob-rn-tiny\n")
    ckpt = save_checkpoint(run / "checkpoints", 3, model.clip.state_dict(), {"extras": {}},
                           {"model": "cloob-rn-tiny", "method": "siglip-hopfield", "step": 3, "hopfield_beta": 14.3,
                            "config": {"seed": 0, "batch_size": 8, "method": "siglip-hopfield"}})
    return ckpt, root / "scenes"


def test_both_objectives_on_the_same_batches(siglip_hopfield_checkpoint, tmp_path, capsys):
    ckpt, scenes = siglip_hopfield_checkpoint
    out = tmp_path / "switch.json"
    assert sw.main([str(ckpt), "--data", f"scenes:{scenes}", "--batches", "2", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| siglip |" in table and "| siglip-hopfield |" in table and "(U_x, U_y)" in table
    data = json.loads(out.read_text())
    assert data["step"] == 3 and data["batch_size"] == 8 and len(data["per_batch"]["siglip"]) == 2
    for batch in data["per_batch"]["siglip"]:
        # the two terms come from the cosines alone; their sum must be the loss the training kernel computed
        st = batch["(x, y)"]
        assert st["matched_term"] + st["unmatched_term"] == pytest.approx(batch["loss"], rel=1e-4)
        assert batch["grad_norm"] > 0
    for batch in data["per_batch"]["siglip-hopfield"]:
        halves = batch["(U_x, U_y)"], batch["(V_y, V_x)"]
        total = sum(h["matched_term"] + h["unmatched_term"] for h in halves) / 2
        assert total == pytest.approx(batch["loss"], rel=1e-4)


def test_a_method_without_warm_start_is_refused(clip_run, capsys):
    run, scenes = clip_run
    assert sw.main([str(run / "checkpoints" / "step-00000005"), "--data", f"scenes:{scenes}"]) == 2
    assert "no warm start" in capsys.readouterr().err
