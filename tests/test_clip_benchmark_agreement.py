"""cloob's benchmark metrics agree with CLIP_benchmark's own evaluation (the reference tool), on one checkpoint.

CLIP_benchmark (1.6.2) is run through its Python API with ``model_type="open_clip"`` on the same cloob
checkpoint (its ``model.safetensors`` is an open_clip state dict), the same class names and templates.
Two snags of that version, handled here without pinning NumPy:
- its ``accuracy`` helper calls ``float()`` on a 1-element NumPy array, which NumPy 2.4 refuses: top-k is
  counted here from the logits its ``run_classification`` returns; for the linear probe the helper is
  replaced by the same count (``_accuracy``);
- its linear probe runs on CUDA only (``.cuda()`` calls): the probe is run on this CPU by making
  ``.cuda()`` and ``.to("cuda")`` stay on the CPU, which changes none of its arithmetic.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cloob.cli import main

EUROSAT = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
           "Residential", "River", "SeaLake")  # torchvision's EuroSAT folder names, in label order


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from cloob.checkpoint import save_checkpoint
    from cloob.models import create_model

    root = tmp_path_factory.mktemp("agree")
    rng = np.random.default_rng(0)
    for c, name in enumerate(EUROSAT):  # torchvision's EuroSAT layout: <root>/eurosat/2750/<class>/*.jpg
        d = root / "data" / "eurosat" / "2750" / name
        d.mkdir(parents=True)
        for i in range(4):
            a = (np.zeros((40, 40, 3)) + 25 * c + rng.integers(0, 80, (40, 40, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(a).save(d / f"{name}_{i}.jpg", quality=95)
    images = []
    flickr = root / "data" / "flickr8k"
    (flickr / "images").mkdir(parents=True)
    for i in range(12):  # Karpathy-split JSON, as dataset_flickr8k.json
        a = (np.zeros((40, 40, 3)) + 20 * i + rng.integers(0, 60, (40, 40, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(a).save(flickr / "images" / f"{i}.jpg", quality=95)
        images.append({"filename": f"{i}.jpg", "split": "test", "sentences": [
            {"raw": f"a picture number {i} of something"}, {"raw": f"photo {i} with {['red', 'blue'][i % 2]} tones"}]})
    (flickr / "dataset_flickr8k.json").write_text(json.dumps({"dataset": "flickr8k", "images": images}))
    torch.manual_seed(0)
    model, _, _ = create_model("cloob-rn-tiny")
    ckpt = save_checkpoint(root / "run" / "checkpoints", 3, model.clip.state_dict(), {"extras": {}},
                           {"model": "cloob-rn-tiny", "method": "clip", "step": 3})
    return root, ckpt


def _clip_benchmark_model(ckpt):
    from clip_benchmark.models import load_clip

    import cloob.models  # noqa: F401 - registers cloob-rn-tiny with open_clip

    model, transform, tokenizer = load_clip("open_clip", "cloob-rn-tiny", str(ckpt / "model.safetensors"), None, "cpu")
    return model.eval(), transform, tokenizer


def test_zeroshot_and_retrieval_agree_with_clip_benchmark(world):
    from clip_benchmark.metrics import zeroshot_classification as zsc
    from clip_benchmark.metrics import zeroshot_retrieval as zsr
    from torchvision.datasets import EuroSAT

    root, ckpt = world
    out = root / "out"
    assert main(["benchmark", "--model-source", str(root / "run"), "--suite", "eurosat,flickr8k",
                 "--root", str(root / "data"), "--out", str(out), "--device", "cpu"]) == 0
    ours = {p.name: json.loads(p.read_text())["metrics"] for p in out.glob("*_run_*.json")}

    model, transform, tokenizer = _clip_benchmark_model(ckpt)
    ds = EuroSAT(str(root / "data"), transform=transform, download=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=16)
    from importlib import resources

    package = lambda f: json.loads((resources.files("clip_benchmark") / "datasets" / f).read_text())  # noqa: E731
    classifier = zsc.zero_shot_classifier(model, tokenizer, package("en_classnames.json")["eurosat"],
                                          package("en_zeroshot_classification_templates.json")["eurosat"], "cpu",
                                          amp=False)
    logits, target = zsc.run_classification(model, classifier, loader, "cpu", amp=False)
    top5 = logits.topk(5, dim=1).indices
    theirs = {"acc1": float((logits.argmax(1) == target).float().mean()),
              "acc5": float((top5 == target[:, None]).any(1).float().mean())}
    zs = ours["eurosat_run_zeroshot_classification.json"]
    assert zs["acc1"] == pytest.approx(theirs["acc1"], abs=1e-3)
    assert zs["acc5"] == pytest.approx(theirs["acc5"], abs=1e-3)

    data = json.loads((root / "data" / "flickr8k" / "dataset_flickr8k.json").read_text())
    pairs = [(transform(Image.open(root / "data" / "flickr8k" / "images" / im["filename"]).convert("RGB")),
              [s["raw"] for s in im["sentences"]]) for im in data["images"]]
    rloader = torch.utils.data.DataLoader(pairs, batch_size=5, collate_fn=lambda b: (torch.stack([x for x, _ in b]),
                                                                                   [t for _, t in b]))
    theirs_r = zsr.evaluate(model, rloader, tokenizer, "cpu", amp=False, recall_k_list=[1, 5, 10])
    r = ours["flickr8k_run_zeroshot_retrieval.json"]
    for k in (1, 5, 10):
        for d in ("image", "text"):
            assert r[f"{d}_retrieval_recall@{k}"] == pytest.approx(theirs_r[f"{d}_retrieval_recall@{k}"], abs=1e-3)


def _accuracy(output, target, topk=(1,)):
    """CLIP_benchmark's top-k count without ``float()`` on a NumPy array."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [float(correct[:k].reshape(-1).float().sum()) / len(target) for k in topk]


def test_linear_probe_agrees_with_clip_benchmark(tmp_path, monkeypatch):
    from clip_benchmark.metrics import linear_probe as lp

    from cloob.evals.linear_probe import clip_benchmark_linear_probe

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 16))

    def make(n):
        y = rng.integers(0, 6, n)
        x = centers[y] + 1.5 * rng.normal(size=(n, 16))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y

    (xtr, ytr), (xva, yva), (xte, yte) = make(96), make(32), make(60)
    ours = clip_benchmark_linear_probe(xtr, ytr, xva, yva, xte, yte, epochs=3, batch_size=32)

    # CLIP_benchmark reads cached features from <feature_root>/<model_id>/features_<split>.pt when present
    (tmp_path / "m").mkdir()
    for split, x, y in (("train", xtr, ytr), ("val", xva, yva), ("test", xte, yte)):
        torch.save(torch.from_numpy(x), tmp_path / "m" / f"features_{split}.pt")
        torch.save(torch.from_numpy(y), tmp_path / "m" / f"targets_{split}.pt")
    to = torch.Tensor.to
    monkeypatch.setattr(torch.nn.Module, "cuda", lambda self, *a, **k: self)
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: to(self, *("cpu" if x == "cuda" else x for x in a), **k))
    monkeypatch.setattr(lp, "accuracy", _accuracy)
    torch.manual_seed(0)  # as its command line does before evaluating
    theirs = lp.evaluate(torch.nn.Identity(), None, None, -1, 32, 0, 0.1, 3, "m", 0, str(tmp_path), "cuda",
                         val_dataloader=object(), amp=False)
    assert ours["weight_decay"] == pytest.approx(theirs["weight_decay"])
    for k in ("acc1", "acc5", "mean_per_class_recall"):
        assert ours[k] == pytest.approx(theirs[f"lp_{k}"], abs=1e-3), k
