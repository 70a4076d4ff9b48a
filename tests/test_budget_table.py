"""scripts/budget_table.py on hand-made cells: groups by method or by recipe label, means and Welch's p
against scipy, the analyze diagnostics, and only finished cells."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts_loader import load_script


def _script():
    return load_script("budget_table")


def _cell(grid: Path, name: str, method: str, label: str, steps: int, r1: float, eig: int | None = None,
          done: bool = True) -> None:
    cell = grid / name
    (cell / "eval").mkdir(parents=True)
    (cell / "eval" / "retrieval-flickr8k-test.json").write_text(
        json.dumps({"metrics": {"text_to_image/R@1": r1}}))
    (cell / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": steps, "loss_gap_nats": -1.0}) + "\n")
    if eig is not None:
        ck = {"step": steps, "image": {"effective_eigenvalues": eig, "uniformity": -3.0},
              "text": {"effective_eigenvalues": eig // 2, "uniformity": -2.5}, "alignment": 1.2,
              "similarity": {"matched_mean": 0.4, "matched_std": 0.2, "unmatched_mean": 0.6, "unmatched_std": 0.05}}
        early = dict(ck, step=1, image={"effective_eigenvalues": 1, "uniformity": 0.0})
        (cell / "analysis").mkdir()
        (cell / "analysis" / "analysis.json").write_text(json.dumps({"checkpoints": [early, ck]}))
    if done:
        cfg = {"method": method, "label": label, "max_steps": steps}
        (cell / "DONE").write_text(json.dumps({"config": cfg, "seconds": 100.0}))


def test_groups_by_label_and_compares_with_welch(tmp_path):
    scipy_stats = pytest.importorskip("scipy.stats")
    mod = _script()
    grid = tmp_path / "flickr8k"
    clip = [0.10, 0.12, 0.11]
    paper = [0.05, 0.07, 0.04]
    for s, v in enumerate(clip):
        _cell(grid, f"s{s}-clip_1200", "clip", "clip-1200", 1200, v, eig=80)
    for s, v in enumerate(paper):
        _cell(grid, f"s{s}-cloob-paper_1200", "cloob", "cloob-paper-1200", 1200, v)
    _cell(grid, "s0-cloob_1200", "cloob", "cloob-1200", 1200, 0.09)
    _cell(grid, "s1-cloob_1200", "cloob", "cloob-1200", 1200, 0.99, done=False)  # unfinished: not read
    spec = "retrieval-flickr8k-test/text_to_image/R@1"

    data, groups, method_of = mod.collect([grid], [spec], by="label")
    assert groups == ["clip", "cloob", "cloob-paper"]  # CLIP first (the baseline), recipes after their method
    assert method_of == {"clip": "clip", "cloob": "cloob", "cloob-paper": "cloob"}
    assert data[("cloob", 1200)][f"metric:{spec}"] == [0.09]
    assert data[("clip", 1200)]["ana:eig/image"] == [80, 80, 80]  # the last analysed step, not the first

    text = mod.table(data, groups, [spec])
    p = scipy_stats.ttest_ind(paper, clip, equal_var=False).pvalue
    row = next(line for line in text.splitlines() if line.startswith("| 1200 | retrieval"))
    assert "11.0 ± 1.0 (3)" in row and "5.3 ± 1.5 (3)" in row
    assert f"-5.7 (p={p:.2g}*)" in row
    assert "effective eigenvalues, image (99 %) | 80 ± 0 (3) | — | — |" in text

    # by method the two CLOOB recipes pool
    data, groups, _ = mod.collect([grid], [spec], by="method")
    assert groups == ["clip", "cloob"] and len(data[("cloob", 1200)][f"metric:{spec}"]) == 4


def test_group_name_strips_only_the_budget_suffix():
    mod = _script()
    assert mod.group_name({"method": "cloob", "label": "lit-cloob-1200", "max_steps": 1200}, "label") == "lit-cloob"
    assert mod.group_name({"method": "cloob", "label": "cloob-300", "max_steps": 1200}, "label") == "cloob-300"
    assert mod.group_name({"method": "siglip", "max_steps": 150}, "label") == "siglip"
    assert mod.group_name({"method": "siglip", "label": "x-150", "max_steps": 150}, "method") == "siglip"


def test_plot_tells_recipes_of_one_method_apart(tmp_path, monkeypatch):
    import cloob.analysis.plots as plots

    mod = _script()
    grid = tmp_path / "flickr8k"
    for s in range(2):
        _cell(grid, f"s{s}-cloob_300", "cloob", "cloob-300", 300, 0.05 + s / 100)
        _cell(grid, f"s{s}-cloob_1200", "cloob", "cloob-1200", 1200, 0.08 + s / 100)
        _cell(grid, f"s{s}-cloob-paper_1200", "cloob", "cloob-paper-1200", 1200, 0.07)
        _cell(grid, f"s{s}-lit-cloob_1200", "cloob", "lit-cloob-1200", 1200, 0.09)
    spec = "retrieval-flickr8k-test/text_to_image/R@1"
    data, groups, method_of = mod.collect([grid], [spec], by="label")
    figs = []
    monkeypatch.setattr(plots, "save_png", lambda fig, out: figs.append(fig))
    mod.plot(data, groups, [spec], tmp_path / "x.png", "t", method_of)
    lines = {c.get_label(): c.lines[0] for c in figs[0].axes[0].containers}  # errorbar: (data line, caps, bars)
    assert set(lines) == {"cloob", "cloob-paper", "lit-cloob"}
    assert list(lines["cloob"].get_xdata()) == [300, 1200]
    assert len({line.get_marker() for line in lines.values()}) == 3  # the two single points differ by marker
    assert lines["cloob"].get_linestyle() == "-" and lines["lit-cloob"].get_linestyle() == "--"


def test_inline_tables_put_the_difference_and_welch_p_in_each_cell(tmp_path):
    scipy_stats = pytest.importorskip("scipy.stats")
    mod = _script()
    grid = tmp_path / "g"
    clip, loob, hop = [0.10, 0.12, 0.11], [0.13, 0.15, 0.14], [0.05]
    for s in range(3):
        _cell(grid, f"s{s}-clip", "clip", "clip-150", 150, clip[s])
        _cell(grid, f"s{s}-infoloob", "infoloob", "infoloob-150", 150, loob[s])
    _cell(grid, "s0-cloob", "cloob", "cloob-150", 150, hop[0])
    spec = "retrieval-flickr8k-test/text_to_image/R@1"
    data, groups, _ = mod.collect([grid], [spec])
    text = mod.inline_tables(data, groups, [spec], names={"clip": "CLIP"})
    head, rule, row = text.splitlines()
    assert head == "| 150 steps | CLIP | infoloob | cloob |"
    p = scipy_stats.ttest_ind(loob, clip, equal_var=False).pvalue
    # one seed: no test; the groups' n differ, so every cell shows its own
    assert row == (f"| {spec} | 11.0 ± 1.0 [n=3] | **14.0 ± 1.0** (+3.0, p={p:.2g}*) [n=3] | "
                   "5.0 ± 0.0 (−6.0) [n=1] |")
