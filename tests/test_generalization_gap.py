"""scripts/generalization_gap.py: the equal-size train subset it evaluates, and the recipe names of its figure."""
import csv
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("generalization_gap", ROOT / "scripts" / "generalization_gap.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _csv(path, photos_captions):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filepath", "title"])
        for photo, n in photos_captions:
            w.writerows([f"images/{photo}.jpg", f"{photo} caption {i}, with a comma"] for i in range(n))


def test_first_photos_keeps_every_caption_of_the_first_n_photos(tmp_path):
    mod = _script()
    src = tmp_path / "train.csv"
    _csv(src, [("a", 5), ("b", 3), ("c", 5), ("d", 5)])
    out = mod.first_photos(src, tmp_path / "train-first2.csv", 2)
    rows = list(csv.reader(out.open(newline="")))
    assert rows[0] == ["filepath", "title"]
    assert [r[0] for r in rows[1:]] == ["images/a.jpg"] * 5 + ["images/b.jpg"] * 3
    assert rows[1][1] == "a caption 0, with a comma"
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="has 4 photos, fewer than --photos 5"):
        mod.first_photos(src, tmp_path / "train-first5.csv", 5)


def test_recipe_of_drops_the_seed_only():
    mod = _script()
    assert mod.recipe_of("s0-clip_1200") == "clip_1200"
    assert mod.recipe_of("s12-cloob_paper_1200") == "cloob_paper_1200"
    assert mod.recipe_of("scratch-clip") == "scratch-clip"
    assert mod.recipe_of("s0-") == "s0-"


def test_collect_keeps_steps_whose_checkpoints_are_gone_and_skips_half_evaluated_ones(tmp_path):
    import json

    mod = _script()

    def result(step, name, recall):
        d = tmp_path / "s0-clip_1200" / f"step-{step}" / name
        d.mkdir(parents=True)
        metrics = {"mean_recall": recall, "text_to_image/R@1": recall / 2, "image_to_text/R@1": recall / 4, "x": 1}
        (d / "retrieval-x.json").write_text(json.dumps({"metrics": metrics}))

    for step, train, val in ((1000, 0.9, 0.15), (100, 0.1, 0.05), (200, 0.2, 0.08)):
        result(step, "train", train)
        result(step, "val", val)
    result(300, "train", 0.3)  # its val evaluation never finished
    rows = mod.collect(tmp_path, "s0-clip_1200")
    assert [r["step"] for r in rows] == [100, 200, 1000]
    assert rows[2] == {"run": "s0-clip_1200", "step": 1000,
                       "train": {"mean_recall": 0.9, "text_to_image/R@1": 0.45, "image_to_text/R@1": 0.225},
                       "val": {"mean_recall": 0.15, "text_to_image/R@1": 0.075, "image_to_text/R@1": 0.0375}}
    assert mod.collect(tmp_path, "s1-clip_1200") == []
