"""Class names and templates are the packages' own (their files, read here directly, are the reference), and
the batched, cached zero-shot classifier equals a per-prompt loop over method.md §2's formula."""
import json
import string
from importlib import resources

import pytest
import torch

from cloob.evals import prompts


def _package(name):
    return json.loads((resources.files("clip_benchmark") / "datasets" / name).read_text(encoding="utf-8"))


def _shipped(name):
    return json.loads((resources.files("cloob.evals") / "prompts" / f"{name}.json").read_text(encoding="utf-8"))


def _cb_templates(key):
    return [t.replace("{c}", "{}") for t in _package("en_zeroshot_classification_templates.json")[key]]


def _one_slot(template: str) -> bool:
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    return fields == [""]


def test_imagenet_is_open_clips():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    for name in ("imagenet", "imagenetv2"):
        assert prompts.classnames(name) == list(IMAGENET_CLASSNAMES) and len(IMAGENET_CLASSNAMES) == 1000
        assert prompts.templates(name) == [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
        assert len(prompts.templates(name)) == 80


@pytest.mark.parametrize("ours,theirs,n", [("flowers102", "flowers", 102), ("gtsrb", "gtsrb", 43),
                                           ("country211", "country211", 211), ("eurosat", "eurosat", 10),
                                           ("pets", "pets", 37), ("mnist", "mnist", 10), ("svhn", "svhn", 10),
                                           ("caltech101", "caltech101", 102), ("pcam", "pcam", 2)])
def test_clip_benchmark_names_and_templates(ours, theirs, n):
    names = _package("en_classnames.json")[theirs]
    assert len(names) == n and prompts.classnames(ours) == names
    assert prompts.classnames(ours, ["ignored"] * n) == names  # the package's list beats the dataset's own
    assert prompts.templates(ours) == _cb_templates(theirs)


def test_cifar10_is_the_cifar10_classes():
    from cloob.data.cifar10 import CLASSES

    assert prompts.classnames("cifar10") == list(CLASSES) == _shipped("cifar10")["classnames"]
    assert prompts.templates("cifar10") == _cb_templates("cifar10") and len(prompts.templates("cifar10")) == 18


@pytest.mark.parametrize("name,key,n_classes", [("stanford_cars", "cars", 196), ("cifar100", "cifar100", 100),
                                                ("dtd", "dtd", 47), ("food101", "food101", 101),
                                                ("fgvc_aircraft", "fgvc_aircraft", 100), ("sun397", "sun397", 397),
                                                ("stl10", "stl10", 10), ("resisc45", "resisc45", 45)])
def test_clip_lists_name_what_the_packages_do_not(name, key, n_classes):
    """Names from CLIP's shipped list, templates still clip-benchmark's."""
    data = _shipped(name)
    assert prompts.classnames(name) == data["classnames"] and len(set(data["classnames"])) == n_classes
    assert prompts.templates(name) == _cb_templates(key)


def test_shipped_only_birdsnap_and_ucf101():
    for name, n_classes, n_templates in (("birdsnap", 500, 1), ("ucf101", 101, 48)):
        data = _shipped(name)
        assert prompts.classnames(name) == data["classnames"] and len(set(data["classnames"])) == n_classes
        assert prompts.templates(name) == data["templates"] and len(data["templates"]) == n_templates
    assert "Acadian Flycatcher" in prompts.classnames("birdsnap") and "Apply Eye Makeup" in prompts.classnames("ucf101")


def test_shipped_files_name_their_source():
    folder = resources.files("cloob.evals") / "prompts"
    files = sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))
    assert files == sorted(prompts.SHIPPED)
    for name in files:
        data = _shipped(name)
        assert "openai/CLIP, data/prompts.md" in data["source"] and "commit" in data["source"], name
        assert data["classnames"] and all(_one_slot(t) for t in data["templates"]), name
    for name in ("birdsnap", "ucf101", "stanford_cars"):  # also in the reference repository's file
        assert "ml-jku/cloob" in _shipped(name)["source"] and "zeroshot_data.py" in _shipped(name)["source"]


def test_dataset_names_where_the_packages_have_none():
    own = ["apple", "aquarium_fish"] + [f"c{i}" for i in range(98)]
    assert prompts.classnames("cifar100", own)[:2] == ["apple", "aquarium fish"]  # CLIP_benchmark's rule
    ids = [str(i) for i in range(100)]
    assert prompts.classnames("cifar100", ids) == _shipped("cifar100")["classnames"]  # ids name nothing
    assert prompts.classnames("birdsnap", [f"x{i}" for i in range(500)]) == _shipped("birdsnap")["classnames"]
    assert "own class names" in prompts.source("cifar100", own) and "cifar100.json" in prompts.source("cifar100")
    assert prompts.classnames("voc2007", ["cat", "dog"]) == ["cat", "dog"]
    with pytest.raises(ValueError, match="neither"):
        prompts.classnames("voc2007")


def test_every_known_dataset_has_templates_with_one_slot_and_a_source():
    known = prompts.known()
    for name in ("birdsnap", "country211", "flowers102", "gtsrb", "ucf101", "stanford_cars", "imagenet",
                 "imagenetv2", "cifar10", "cifar100", "dtd", "food101", "pets", "fgvc_aircraft", "eurosat",
                 "sun397", "mnist", "stl10", "caltech101", "svhn", "resisc45", "pcam", "vtab/caltech101"):
        assert name in known, name
    for key in _package("en_classnames.json"):  # every clip-benchmark key under its own name, or ours
        assert key in known or key in prompts.PACKAGE_KEYS.values(), key
    assert set(prompts.PROMPT_SOURCES) == set(known)
    for name in known:
        assert prompts.templates(name) and all(_one_slot(t) for t in prompts.templates(name)), name
        assert "templates:" in prompts.PROMPT_SOURCES[name]


def test_unknown_dataset_names_the_known_closest_first():
    with pytest.raises(ValueError, match=r"unknown dataset 'flowers-102'.*closest first\): flowers102, "):
        prompts.templates("flowers-102")
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        prompts.classnames("nope")


def test_template_sets_are_the_packages():
    from cloob.evals.templates import IMAGENET_TEMPLATES, TEMPLATE_SETS, load_templates

    assert list(TEMPLATE_SETS) == ["cifar", "imagenet", "generic", "scenes", "scenes-object"]
    assert "cifar" in TEMPLATE_SETS and "cifar10" not in TEMPLATE_SETS
    assert list(TEMPLATE_SETS["cifar"]) == _cb_templates("cifar10")
    assert IMAGENET_TEMPLATES == TEMPLATE_SETS["imagenet"] and len(IMAGENET_TEMPLATES) == 80
    assert load_templates("ucf101") == _shipped("ucf101")["templates"]


# ------------------------------------------------------------------ the classifier
@pytest.fixture(scope="module")
def tiny():
    from cloob.models import create_model, get_tokenizer

    torch.manual_seed(0)
    model, _, _ = create_model("cloob-rn-tiny")
    return model.eval(), get_tokenizer("cloob-rn-tiny")


CLASSES = [f"class {i}" for i in range(7)]
TEMPLATES = ["a photo of a {}.", "a {} here.", "the {}."]  # 7 × 3 = 21 prompts


@torch.no_grad()
def _naive(model, tok, classes, templates):
    """Each prompt encoded alone, normalised; mean over templates; normalised."""
    out = []
    for name in classes:
        rows = [torch.nn.functional.normalize(model.encode_text(tok([t.format(name)])).float(), dim=-1)[0]
                for t in templates]
        out.append(torch.nn.functional.normalize(torch.stack(rows).mean(0), dim=0))
    return torch.stack(out)


def test_batched_classifier_equals_the_per_prompt_formula(tiny):
    from cloob.evals.zeroshot import zeroshot_classifier

    model, tok = tiny
    want = _naive(model, tok, CLASSES, TEMPLATES)
    for batch_size in (2, 4, 8, 256):  # < K; 1 class a batch; 2 classes and a last single one; all at once
        W = zeroshot_classifier(model, tok, CLASSES, TEMPLATES, batch_size=batch_size)
        assert W.shape == want.shape and W.dtype == torch.float32
        assert torch.allclose(W, want, atol=1e-6, rtol=0), batch_size


def test_classifier_encodes_at_most_a_batch_at_once(tiny, monkeypatch):
    from cloob.evals.zeroshot import zeroshot_classifier

    model, tok = tiny
    sizes, real = [], model.encode_text
    monkeypatch.setattr(model, "encode_text", lambda x, *a, **k: sizes.append(len(x)) or real(x, *a, **k))
    zeroshot_classifier(model, tok, CLASSES, TEMPLATES, batch_size=8, progress=True)
    assert sizes == [6, 6, 6, 3]  # two whole classes a batch


def test_classifier_cache_is_reused_and_invalidated(tiny, tmp_path, monkeypatch):
    from cloob.evals.zeroshot import zeroshot_classifier

    model, tok = tiny
    cache = tmp_path / "sub" / "w.safetensors"
    W = zeroshot_classifier(model, tok, CLASSES, TEMPLATES, batch_size=5, cache_file=cache, identity="m1")
    assert cache.is_file() and json.loads(cache.with_name("w.safetensors.json").read_text())["identity"] == "m1"
    calls, real = [], model.encode_text
    monkeypatch.setattr(model, "encode_text", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert torch.equal(zeroshot_classifier(model, tok, CLASSES, TEMPLATES, cache_file=cache, identity="m1"), W)
    assert not calls  # hit
    for classes, templates, identity in ((CLASSES, TEMPLATES + ["a {}."], "m1"),  # other templates
                                         (CLASSES[::-1], TEMPLATES, "m1"),  # other names (order)
                                         (CLASSES, TEMPLATES, "m2")):  # other weights
        calls.clear()
        zeroshot_classifier(model, tok, classes, templates, cache_file=cache, identity=identity)
        assert calls
    assert not list(cache.parent.glob("*.tmp"))
    cache.write_bytes(b"torn")
    calls.clear()
    assert torch.allclose(zeroshot_classifier(model, tok, CLASSES, TEMPLATES, cache_file=cache, identity="m1"), W,
                          atol=1e-6)
    assert calls
    with pytest.raises(ValueError, match="identity"):
        zeroshot_classifier(model, tok, CLASSES, TEMPLATES, cache_file=cache)
