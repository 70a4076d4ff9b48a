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
