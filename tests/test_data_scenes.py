"""The built-in scenes generator: determinism, caption/metadata consistency, cache, eval splits, export."""
import json
import re

import numpy as np
import pytest

from cloob.data import DataError, open_labelled, open_pairs, open_retrieval
from cloob.data import scenes as S

OBJ = re.compile(r"\b(?:(small|little|large|big) )?(" + "|".join(S.COLOURS) + r") (" + "|".join(S.SHAPES) + r")\b")
SIZE_OF = {"small": "small", "little": "small", "large": "large", "big": "large"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("scenes")
    S.generate_scenes(d, 60, size=32, seed=3, n_eval=70, workers=2, chunk=16)
    return d


def test_vocabulary_sizes():
    assert len(S.SHAPES) >= 8 and len(S.COLOURS) >= 8 and len(S.SIZES) == 2
    assert len(S.SCENES) >= 10
    for name, objs in S.SCENES.items():
        assert 3 <= len(objs) <= 5 and len(set(objs)) == len(objs)
        assert all(c in S.COLOURS and s in S.SHAPES for c, s in objs)
    assert len({frozenset(o) for o in S.SCENES.values()}) == len(S.SCENES)


def test_same_seed_gives_identical_bytes_whatever_the_workers(tmp_path, cache):
    S.generate_scenes(tmp_path, 60, size=32, seed=3, n_eval=70, workers=1, chunk=1000)
    for split in S.SPLITS:
        assert (tmp_path / split / "images.npy").read_bytes() == (cache / split / "images.npy").read_bytes()
        assert (tmp_path / split / "meta.jsonl").read_bytes() == (cache / split / "meta.jsonl").read_bytes()


def test_other_seed_differs_and_eval_splits_use_another_seed(cache):
    tx = S.background_textures(32, 3)
    a, _ = S.make_sample("train", 0, size=32, seed=3, p=0.7, q=0.3, textures=tx)
    b, _ = S.make_sample("train", 0, size=32, seed=4, p=0.7, q=0.3, textures=tx)
    assert not np.array_equal(a, b)
    train, _ = S.load_split(cache, "train")
    ev, _ = S.load_split(cache, "eval_retrieval")
    assert not any(np.array_equal(train[i], ev[j]) for i in range(10) for j in range(10))


def test_every_object_a_caption_names_is_in_the_image():
    tx = S.background_textures(64, 0)
    named = 0
    for i in range(400):
        _, m = S.make_sample("train", i, size=64, seed=0, p=0.7, q=0.3, textures=tx)
        present = {(o["size"], o["colour"], o["shape"]) for o in m["objects"]}
        mentions = OBJ.findall(m["caption"])
        assert 1 <= len(mentions) <= 3, m["caption"]
        for size, colour, shape in mentions:
            if size:
                assert (SIZE_OF[size], colour, shape) in present, (m["caption"], present)
            else:
                assert any((c, s) == (colour, shape) for _, c, s in present), (m["caption"], present)
        scenes_in_caption = [s for s in S.SCENE_NAMES if re.search(rf"\b{s}\b", m["caption"])]
        assert scenes_in_caption == ([m["scene"]] if m["scene_named"][0] else [])
        named += m["scene_named"][0]
    assert 0.2 < named / 400 < 0.4  # q = 0.3


def test_scene_images_hold_characteristic_objects_with_prob_p_and_few_distractors():
    tx = S.background_textures(32, 0)
    kept = total = 0
    for i in range(300):
        _, m = S.make_sample("train", i, size=32, seed=1, p=0.7, q=0.3, textures=tx)
        chars = set(S.SCENES[m["scene"]])
        objs = [(o["colour"], o["shape"]) for o in m["objects"]]
        dis = [o for o in m["objects"] if not o["characteristic"]]
        assert len(dis) <= 2 and all((o["colour"], o["shape"]) not in chars for o in dis)
        assert all((o["colour"], o["shape"]) in chars for o in m["objects"] if o["characteristic"])
        kept += sum(o in objs for o in chars)
        total += len(chars)
        for o in m["objects"]:
            assert 0 <= o["x"] <= 32 and 0 <= o["y"] <= 32
    assert 0.65 < kept / total < 0.8  # p = 0.7 (plus the at-least-one rule)


def test_cache_is_detected_and_other_parameters_refused(cache):
    before = (cache / "train" / "images.npy").stat().st_mtime_ns
    m = S.generate_scenes(cache, 60, size=32, seed=3, n_eval=70, workers=2, chunk=16)
    assert (cache / "train" / "images.npy").stat().st_mtime_ns == before
    assert m == json.loads((cache / "manifest.json").read_text())
    assert (cache / "preview.png").is_file()
    with pytest.raises(DataError, match="other parameters"):
        S.generate_scenes(cache, 61, size=32, seed=3, n_eval=70)


def test_datasets_read_the_cache(cache):
    images, metas = S.load_split(cache, "train")
    pairs = open_pairs(f"scenes:{cache}", image_transform=None, tokenizer=None)
    assert len(pairs) == 60 and images.shape == (60, 32, 32, 3)
    img, cap = pairs[7]
    assert np.array_equal(np.asarray(img), images[7]) and cap == metas[7]["caption"]

    sc = open_labelled(f"scenes-scene:{cache}", image_transform=None)
    assert sc.classes == list(S.SCENE_NAMES) and [sc[i][1] for i in range(12)] == list(range(12))
    ob = open_labelled(f"scenes-object:{cache}", image_transform=None)
    assert len(ob.classes) == 64 and ob.classes[0] == "red circle"
    _, om = S.load_split(cache, "eval_object")
    for i in range(len(ob)):
        assert len(om[i]["objects"]) == 1
        o = om[i]["objects"][0]
        assert ob.classes[ob[i][1]] == f"{o['colour']} {o['shape']}"

    rt = open_retrieval(f"scenes-retrieval:{cache}", image_transform=None)
    assert len(rt) == 70 and all(len(c) == S.CAPTIONS_PER_IMAGE for c in rt.captions)


def test_missing_cache_tells_how_to_make_it(tmp_path):
    with pytest.raises(DataError, match="cloob data scenes"):
        open_pairs(f"scenes:{tmp_path}", image_transform=None, tokenizer=None)


@pytest.mark.parametrize("fmt", ["csv", "wds"])
def test_export_roundtrips_the_same_pairs(tmp_path, cache, fmt):
    spec = S.export_scenes(cache, tmp_path / fmt, format=fmt, per_shard=25)
    ds = open_pairs(spec, image_transform=None, tokenizer=None)
    got = [ds[i] for i in range(len(ds))] if fmt == "csv" else list(ds)
    images, metas = S.load_split(cache, "train")
    assert [c for _, c in got] == [m["caption"] for m in metas]
    assert all(np.array_equal(np.asarray(x), images[i]) for i, (x, _) in enumerate(got))


def test_zero_shot_templates_format():
    assert all("{}" in t for t in S.SCENE_TEMPLATES + S.OBJECT_TEMPLATES)
