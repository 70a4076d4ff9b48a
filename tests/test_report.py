"""`cloob analyze` on a tiny random checkpoint and `cloob report` on fixture run directories."""
import argparse
import base64
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from cloob.analysis.runs import read_metrics
from cloob.analysis.reading import compare_sentence, reading
from cloob.analysis.report import build_report, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


def cli(*argv):
    """The analyze/report sub-commands as a user runs them (cli.main's one error path included)."""
    from cloob.cli import main

    return main([str(a) for a in argv])


def valid_png(data: bytes) -> bool:
    from PIL import Image
    import io

    if not data.startswith(PNG_MAGIC):
        return False
    img = Image.open(io.BytesIO(data))
    img.verify()
    return img.size[0] > 50 and img.size[1] > 50


def write_run(run: Path, method: str, seed: int, acc: float, steps: int = 40, ckpt_src: Path | None = None):
    """A run directory with exactly the file shapes of the training/eval layers."""
    run.mkdir(parents=True)
    cfg = {"method": method, "seed": seed, "model": "cloob-rn-tiny", "batch_size": 32, "inv_tau": 30.0,
           "hopfield_beta": 8.0 if "hopfield" in method or method == "cloob" else None,
           "train_data": "scenes:/data/scenes", "epochs": 2, "lr": 1e-3, "weight_decay": 0.1}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "versions.json").write_text(json.dumps({"cloob": "0.1.0", "torch": "2.14.1"}))
    rng = np.random.default_rng(seed)
    lines = []
    for s in range(1, steps + 1):
        lines.append({"kind": "train", "step": s, "epoch": s / 20, "time": s * 0.5,
                      "loss": (4.0 if method == "clip" else 3.0) * math.exp(-s / 15) + 0.1 * rng.random(),
                      "inv_tau": 14.3 + s * 0.1 if method == "clip" else 30.0,
                      "beta": cfg["hopfield_beta"], "lr": 1e-3, "pairs_per_s": 100.0,
                      "log_a": 2 + s / (10 if method == "clip" else 7), "log_b": 5 - s / 20 + 0.2 * rng.random(), "skipped_steps": 0,
                      "loss_gap_nats": -s / 20, "cos/x": 0.5, "cos/y": 0.6})
        if cfg["hopfield_beta"]:
            for name in ("U_x", "U_y", "V_x", "V_y"):
                lines[-1][f"eff_patterns/{name}"] = 32 - s / 2
                lines[-1][f"cos/{name}"] = 0.9 - s / 100
        if s % 10 == 0:
            lines.append({"kind": "eval", "step": s, "epoch": s / 20, "val_loss": 3.0 - s / 40,
                          "zeroshot/scenes-scene/top1": acc * s / steps})
    text = "\n".join(json.dumps(x) for x in lines) + "\n"
    (run / "metrics.jsonl").write_text(text + '{"kind": "train", "step": 41, "lo')  # a run still writing
    (run / "eval").mkdir()
    (run / "eval" / "zeroshot-scenes-scene.json").write_text(json.dumps(
        {"evaluator": "zeroshot", "dataset": "scenes-scene:/data/scenes", "top1": acc + 0.01 * rng.standard_normal(),
         "top5": min(1.0, acc + 0.3), "n_images": 40, "seconds": 1.5}))
    (run / "eval" / "retrieval.json").write_text(json.dumps(
        {"evaluator": "retrieval", "dataset": "scenes-retrieval:/data/scenes", "i2t_R@1": 20 + 100 * acc / 5 + rng.random(),
         "t2i_R@1": 18.0 + rng.random()}))
    if ckpt_src is not None:  # the same random weights, relabelled with this run's method
        shutil.copytree(ckpt_src, run / "checkpoints")
        for meta in (run / "checkpoints").glob("step-*/meta.json"):
            m = json.loads(meta.read_text())
            meta.write_text(json.dumps({**m, "method": method, "config": cfg}))
    return run


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from cloob.data.scenes import generate_scenes

    d = tmp_path_factory.mktemp("scenes")
    generate_scenes(d, n=64, size=32, n_eval=40, workers=1)
    return d


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    """A `checkpoints/` dir with two random-init tiny checkpoints (steps 0 and 10)."""
    import torch

    from cloob.models import create_model
    from cloob.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("ckpt") / "checkpoints"
    for step, seed in ((0, 0), (10, 1)):
        torch.manual_seed(seed)
        model, _, _ = create_model("cloob-rn-tiny")
        save_checkpoint(d, step, model.clip.state_dict(), {"extras": {}},
                        {"model": "cloob-rn-tiny", "method": "clip", "step": step, "config": {}})
    return d


@pytest.fixture(scope="module")
def runs(tmp_path_factory, scenes, ckpt_dir):
    """Two clip and two cloob runs; each analysed by the real `cloob analyze` (40 retrieval pairs)."""
    root = tmp_path_factory.mktemp("runs")
    out = []
    for name, method, seed, acc in (("clip-s0", "clip", 0, 0.40), ("clip-s1", "clip", 1, 0.41),
                                    ("cloob-s0", "cloob", 0, 0.52), ("cloob-s1", "cloob", 1, 0.53)):
        run = write_run(root / name, method, seed, acc, ckpt_src=ckpt_dir)
        first = run / "checkpoints" / "step-00000000"
        # clip runs: two checkpoints (relative change); cloob runs: only the first (other weights than clip's last)
        more = ["--checkpoint", run] if method == "clip" else []
        rc = cli("analyze", "--checkpoint", first, *more, "--dataset", f"scenes-retrieval:{scenes}",
                 "--max-samples", 40, "--batch-size", 20, "--device", "cpu")
        assert rc == 0
        out.append(run)
    return out


# ---------------------------------------------------------------- analyze

def test_analyze_writes_json_with_every_diagnostic_and_valid_pngs(runs):
    adir = runs[0] / "analysis"
    result = json.loads((adir / "analysis.json").read_text())
    assert len(result["checkpoints"]) == 2
    for e in result["checkpoints"]:
        assert e["n"] == 40 and e["dim"] == 128
        for side in ("image", "text"):
            assert 1 <= e[side]["effective_eigenvalues"] <= 40
            assert e[side]["ajne"] > 0 and e[side]["uniformity"] <= 0
        assert e["alignment"] >= 0
        s = e["similarity"]
        assert s["k"] == 10 and sum(s["matched_hist"]) == 40 and sum(s["unmatched_hist"]) == 400
        sat = e["saturation"]
        assert 0 < sat["infonce_term"] < 1 and sat["infoloob_term"] > 0
        assert set(sat) == {"mean_log_a", "mean_log_b", "infonce_term", "infoloob_term"}
        assert e["method"] == "clip" and e["label"].startswith("clip step") and len(e["spectrum"]["image"]) == 128
    rc = result["relative_change"][0]
    a, b = (e["image"]["effective_eigenvalues"] for e in result["checkpoints"])
    assert rc["image_effective_eigenvalues"] == pytest.approx((b - a) / a)
    assert set(result["figures"]) == {"similarity_hist", "eigen_spectrum", "eigen_change", "uniformity",
                                      "training_curves"}
    for name in result["figures"].values():
        assert valid_png((adir / name).read_bytes()), name


def test_analyze_bad_input_is_one_line_exit_2(tmp_path, capsys, scenes, ckpt_dir):
    assert cli("analyze", "--checkpoint", tmp_path / "nope", "--dataset", f"scenes-retrieval:{scenes}") == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "nope" in err
    assert cli("analyze", "--checkpoint", ckpt_dir, "--dataset", "cifar10-test:/nowhere", "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1


def test_cli_registers_analyze_and_report():
    from cloob.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"analyze", "report"} <= set(sub.choices)


# ---------------------------------------------------------------- report

def test_report_contains_every_section_and_only_embedded_pngs(runs, tmp_path):
    out = tmp_path / "report.html"
    assert cli("report", *runs, "--out", out) == 0
    page = out.read_text()
    for sid, name in (("config", "Config"), ("curves", "Training curves"), ("evaluation", "Evaluation"),
                      ("diagnostics", "Diagnostics"), ("reading", "Reading")):
        assert f'<section id="{sid}"><h2>{name}</h2>' in page
    # self-contained: no external resources
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page and "<script" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    # 10 training curves (loss above collapse, per-method losses, val loss, inv_tau, beta, effective patterns,
    # raw and retrieved cosines, log a, log b) + 1 zero-shot curve + 1 cross-run histogram
    # + 2 clip runs × 4 + 2 cloob runs × 3 figures
    assert len(images) == 10 + 1 + 1 + 2 * 4 + 2 * 3
    for caption in ("in nats per direction", "one panel per method", "Effective number of stored patterns",
                    "Mean cosine between different images", "Hopfield retrievals U_x"):
        assert caption in page
    assert all(valid_png(base64.b64decode(b)) for b in images)
    for run in runs:
        assert run.name in page
    assert "cloob-rn-tiny" in page and "scenes:/data/scenes" in page
    # the evaluation table: zero-shot top1 is shown ×100, cloob bold (significant), n = 2
    row = re.search(r"<td class=\"l\">top1</td>(.*?)</tr>", page).group(1)
    assert re.search(r'<td>(39|40)\.\d\d ± \d\.\d\d \(2\)</td><td class="sig">(51|52)\.\d\d ± \d\.\d\d \(2\)</td>', row), row
    assert "n_images" not in page and "seconds" not in page.split('id="evaluation"')[1].split("</section>")[0]


def test_reading_names_leader_gap_in_points_and_significance(runs):
    from cloob.analysis.runs import read_run

    text = " ".join(reading([read_run(r) for r in runs]))
    assert "4 run(s): clip (n = 2), cloob (n = 2)." in text
    m = re.search(r"Zeroshot top1 on scenes-scene:/data/scenes: cloob is ahead of clip by (\d+\.\d\d) points", text)
    assert m and 10.0 < float(m.group(1)) < 14.0
    assert "significant (Welch p = " in text
    assert "Overall: cloob leads on" in text
    assert "Final training loss" in text
    assert re.search(r"Diagnostics, matched cosine similarity: (clip|cloob) is higher than (clip|cloob) by", text)
    assert "Retrieval t2i_R@1" in text


def test_reading_is_careful_with_single_runs_and_missing_metrics():
    vbm = {"clip": [0.40], "cloob": [0.45], "infoloob": []}
    txt, facts = compare_sentence("top1", vbm, scale=100, unit="points")
    assert "cloob is ahead of clip by 5.00 points" in txt
    assert "single run" in txt and "anecdotal" in txt and "missing for infoloob" in txt
    assert not facts["significant"]
    txt, _ = compare_sentence("top1", {"clip": [0.4, 0.41], "cloob": []})
    assert "only clip has a value" in txt and "no comparison" in txt
    txt, facts = compare_sentence("Ajne A", {"clip": [2.5, 2.5], "cloob": [2.5, 2.5]})
    assert "clip and cloob are tied at 2.5" in txt and facts["leader"] is None


def test_report_of_a_bare_run_says_what_is_missing(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "config.yaml").write_text("method: clip\nseed: 0\n")
    page = build_report([__import__("cloob.analysis.runs", fromlist=["read_run"]).read_run(run)])
    assert "No metrics.jsonl" in page and "No eval/*.json" in page and "No analysis/analysis.json" in page
    assert "Only one method (clip)" in page


def test_report_bad_run_dir_is_one_line_exit_2(tmp_path, capsys):
    assert cli("report", tmp_path / "missing", "--out", tmp_path / "r.html") == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "missing" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\nnot json\n{"kind": "train", "step": 2}\n')
    assert cli("report", bad, "--out", tmp_path / "r.html") == 2
    assert "metrics.jsonl:2" in capsys.readouterr().err


def test_read_metrics_skips_only_a_truncated_last_line(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"kind": "train", "step": 1}\n\n{"kind": "eval", "step": 1}\n{"kind": "tr')
    recs, skipped = read_metrics(p)
    assert [r["kind"] for r in recs] == ["train", "eval"] and skipped == 1


# ---------------------------------------------------------------- headless Chromium

@pytest.mark.slow
def test_report_renders_in_headless_chromium(runs, tmp_path):
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("chromium is not on PATH and could not be installed (Debian: apt-get install chromium, which "
                    ".ci/run does as root); the report was not opened in a browser")
    report = write_report(runs, tmp_path / "report.html")
    png = tmp_path / "report.png"
    out = subprocess.run(["bash", str(ROOT / "scripts" / "screenshot_report.sh"), str(report), str(png)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    data = png.read_bytes()
    assert valid_png(data)
    from PIL import Image
    import io

    img = Image.open(io.BytesIO(data)).convert("RGB")
    assert img.size[0] == 1280
    # not a blank page: the header band is dark blue and the body has many distinct colours (figures)
    assert img.getpixel((20, 20))[2] > img.getpixel((20, 20))[0]
    assert len(img.resize((320, 1000)).getcolors(1 << 20)) > 500
