"""Evaluators against independent references: hand-computed cases, brute force, scipy."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from cloob.evals import compare as cmp
from cloob.evals.confusions import confused_pairs, confusion_matrix, evaluate_confusions
from cloob.evals.features import Features, encode_labelled
from cloob.evals.fewshot import effective_ks, fewshot, plot_fewshot, sample_k_shot
from cloob.evals.finetune import CosineHead, finetune
from cloob.evals.knn import knn_classify
from cloob.evals.linear_probe import linear_probe, stratified_split
from cloob.evals.retrieval import retrieval_metrics, retrieval_ranks
from cloob.evals.templates import TEMPLATE_SETS, load_classnames, load_templates
from cloob.evals.zeroshot import evaluate_zeroshot, zeroshot_classifier

CLASSES = ["red", "green", "blue"]
TEMPLATES = ["a {}.", "the {}"]


class LinearMaps(nn.Module):
    """Encoders that are fixed linear maps: image x ∈ R^3 -> x; token (class c, template k) -> e_c + 0.5 e_{k}'."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 3, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(3))
        # text embedding table: class c, template k -> one-hot(c) + 0.5 * one-hot((c + 1 + k) % 3)
        table = torch.zeros(3, 2, 3)
        for c in range(3):
            for k in range(2):
                table[c, k, c] += 1
                table[c, k, (c + 1 + k) % 3] += 0.5
        self.register_buffer("table", table)

    def encode_image(self, x):
        return nn.functional.normalize(self.proj(x), dim=-1)

    def encode_text(self, tokens):
        return nn.functional.normalize(self.table[tokens[:, 0], tokens[:, 1]], dim=-1)


def tokenizer(texts):
    out = []
    for t in texts:
        c = next(i for i, n in enumerate(CLASSES) if n in t)
        k = 0 if t.startswith("a ") else 1
        out.append([c, k])
    return torch.tensor(out)


class TensorDataset(torch.utils.data.Dataset):
    def __init__(self, x, y, classes):
        self.x, self.y, self.classes, self.name = x, y, classes, "synthetic"

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def test_zeroshot_classifier_is_the_normalised_template_mean():
    # hand: class c weight ∝ n(e_c + .5 e_{c+1}) + n(e_c + .5 e_{c+2}) = (e_c + .25 e_{c+1} + .25 e_{c+2}) · 2/√1.25
    W = zeroshot_classifier(LinearMaps(), tokenizer, CLASSES, TEMPLATES).numpy()
    for c in range(3):
        v = np.full(3, 0.25)
        v[c] = 1.0
        np.testing.assert_allclose(W[c], v / np.linalg.norm(v), atol=1e-6)


def test_zeroshot_known_answer_top1_and_confusion():
    # images near class 0, 1, 2 corners; predicted class is argmax of x·w_c, i.e. the largest coordinate
    x = torch.tensor([[1, 0, 0], [0.9, 0.2, 0], [0, 1, 0], [0, 0, 1], [0, 0.1, 1], [1, 0.1, 0]], dtype=torch.float32)
    y = np.array([0, 0, 1, 2, 2, 1])  # the last one is labelled 1 but looks like 0: one known mistake
    ds = TensorDataset(x, y, CLASSES)
    m = evaluate_zeroshot(LinearMaps(), tokenizer, ds, templates=TEMPLATES, batch_size=4, details=True)
    assert m["top1"] == pytest.approx(5 / 6)
    assert m["per_class/green"] == pytest.approx(0.5) and m["per_class/red"] == 1.0
    assert "top5" not in m  # fewer than 5 classes
    cm = np.array(m["confusion_matrix"])
    assert cm[0, 1] == 1 and cm.trace() == 5  # predicted red, true green
    # the same from precomputed features
    m2 = evaluate_zeroshot(LinearMaps(), tokenizer, (x.numpy(), y), CLASSES, TEMPLATES)
    assert m2["top1"] == m["top1"]


def test_encode_labelled_keeps_indices_and_counts_bad_samples():
    from cloob.data import BadSample

    class WithBad(TensorDataset):
        def __getitem__(self, i):
            return BadSample("decode_error", "x.png", i) if i == 2 else super().__getitem__(i)

    x = torch.eye(3).repeat(2, 1)
    f = encode_labelled(LinearMaps(), WithBad(x, np.arange(6) % 3, CLASSES), batch_size=4)
    assert f.indices.tolist() == [0, 1, 3, 4, 5]
    assert f.labels.tolist() == [0, 1, 0, 1, 2]
    assert f.report["counts"] == {"decode_error": 1}


def brute_force_recalls(img, txt, owner, k):
    n_img, n_txt = len(img), len(txt)
    S = img @ txt.T
    i2t, t2i = [], []
    for i in range(n_img):
        order = sorted(range(n_txt), key=lambda j: -S[i, j])
        i2t.append(min(order.index(j) for j in range(n_txt) if owner[j] == i) + 1)
    for j in range(n_txt):
        order = sorted(range(n_img), key=lambda i: -S[i, j])
        t2i.append(order.index(owner[j]) + 1)
    return np.mean(np.array(i2t) <= k), np.mean(np.array(t2i) <= k), np.median(i2t), np.median(t2i)


def test_retrieval_recalls_match_brute_force():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(30, 8))
    owner = np.repeat(np.arange(30), rng.integers(1, 5, 30))  # 1..4 captions per image
    txt = img[owner] + 1.5 * rng.normal(size=(len(owner), 8))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    m = retrieval_metrics(img, txt, owner)
    for k in (1, 5, 10):
        i2t, t2i, mi, mt = brute_force_recalls(img, txt, owner, k)
        assert m[f"image_to_text/R@{k}"] == pytest.approx(i2t)
        assert m[f"text_to_image/R@{k}"] == pytest.approx(t2i)
    assert m["image_to_text/median_rank"] == mi and m["text_to_image/median_rank"] == mt
    assert 0 < m["image_to_text/R@1"] < 1


def test_retrieval_perfect_case():
    img = np.eye(4)
    i2t, t2i = retrieval_ranks(img, np.repeat(img, 2, axis=0), np.repeat(np.arange(4), 2))
    assert i2t.tolist() == [1] * 4 and t2i.tolist() == [1] * 8


def test_linear_probe_recovers_separable_features():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16)) * 3
    def blobs(n):
        y = np.arange(n) % 4
        x = centers[y] + rng.normal(size=(n, 16))
        return x / np.linalg.norm(x, axis=1, keepdims=True), y
    xtr, ytr = blobs(200)
    xte, yte = blobs(100)
    m = linear_probe(xtr, ytr, xte, yte)
    assert m["top1"] >= 0.98
    assert m["C"] in [float(c) for c in np.logspace(-2, 4, 7)] and m["n_train"] == 200


def test_k_shot_draws_exactly_k_per_class_without_test_leakage():
    labels = np.repeat(np.arange(5), 20)
    tr, te = stratified_split(labels, 0.5, seed=0)
    assert not set(tr) & set(te) and len(tr) + len(te) == 100
    train_labels = labels[tr]
    for k in (1, 2, 4, 8):
        for seed in range(3):
            pos = sample_k_shot(train_labels, k, seed)
            assert np.bincount(train_labels[pos]).tolist() == [k] * 5
            assert len(set(pos)) == len(pos)
            assert not set(tr[pos]) & set(te)  # drawn dataset items are never test items
    assert sample_k_shot(train_labels, 3, 0).tolist() != sample_k_shot(train_labels, 3, 1).tolist()
    assert effective_ks(train_labels) == [1, 2, 4, 8, 10]  # 10 per class in the pool: k capped


def test_fewshot_mean_std_and_plot(tmp_path):
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 10)
    x = np.eye(3)[y] + 0.3 * rng.normal(size=(30, 3))
    m = fewshot(x[::2], y[::2], x[1::2], y[1::2], ks=(1, 2, 4), seeds=3, zeroshot_top1=0.4)
    assert m["ks"] == [0, 1, 2, 4] and m["k=0/mean"] == 0.4
    assert m["k=4/mean"] == pytest.approx(np.mean(m["draws"]["4"]))
    assert m["k=2/std"] == pytest.approx(np.std(m["draws"]["2"], ddof=1))
    assert plot_fewshot(m, tmp_path / "fs.png").stat().st_size > 1000


def test_confusion_iou_hand_computed():
    # true:      0 0 0 0 1 1 1 2 2 2   n = (4, 3, 3)
    # predicted: 0 0 1 2 1 0 0 2 2 1
    true = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 1, 2, 1, 0, 0, 2, 2, 1])
    m = confusion_matrix(pred, true, 3)
    assert m[1, 0] == 1 and m[0, 1] == 2 and m[2, 0] == 1 and m[1, 2] == 1
    pairs = confused_pairs(m, classes=["a", "b", "c"])
    # IoU(0,1) = (2 + 1)/(4 + 3) = 3/7; IoU(1,2) = (1 + 0)/(3 + 3) = 1/6; IoU(0,2) = (0 + 1)/(4 + 3) = 1/7
    assert [(p["a"], p["b"]) for p in pairs] == [(0, 1), (1, 2), (0, 2)]
    assert [p["iou"] for p in pairs] == pytest.approx([3 / 7, 1 / 6, 1 / 7])
    assert pairs[0]["class_a"] == "a"
    r = evaluate_confusions(pred, true, ["a", "b", "c"])
    assert r["top1"] == pytest.approx(0.5) and r["pair1/iou"] == pytest.approx(3 / 7)


def test_knn_matches_brute_force_majority_vote():
    rng = np.random.default_rng(2)
    tr, ytr = rng.normal(size=(40, 5)), rng.integers(0, 4, 40)
    te, yte = rng.normal(size=(15, 5)), rng.integers(0, 4, 15)
    un = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    S = un(te) @ un(tr).T
    expect = [np.bincount(ytr[np.argsort(-s)[:7]], minlength=4).argmax() for s in S]
    m = knn_classify(tr, ytr, te, yte, k=7, weighting="majority")
    assert m["top1"] == pytest.approx(np.mean(np.array(expect) == yte))


def test_cosine_head_formula():
    T = nn.functional.normalize(torch.randn(4, 3, 6), dim=-1)
    head = CosineHead(T, inv_tau=10.0)
    with torch.no_grad():
        head.template_weights.copy_(torch.tensor([0.5, 0.3, 0.2]))
    x = torch.randn(5, 6)
    Tt = 0.5 * T[:, 0] + 0.3 * T[:, 1] + 0.2 * T[:, 2]
    ref = 10.0 * torch.stack([torch.stack([torch.cosine_similarity(xi, tc, dim=0) for tc in Tt]) for xi in x])
    torch.testing.assert_close(head(x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_finetune_head_learns_separable_classes(head):
    class Backbone(LinearMaps):
        pass
    torch.manual_seed(0)
    y = np.repeat(np.arange(3), 20)
    x = torch.eye(3)[y] + 0.2 * torch.randn(60, 3)
    ds = TensorDataset(x, y, CLASSES)
    T = None
    if head == "cosine":  # text embeddings pointing to the wrong classes: the head must learn template weights/t
        T = nn.functional.normalize(torch.eye(3)[:, None, :].repeat(1, 2, 1) + 0.1, dim=-1)
    m, h = finetune(Backbone(), ds, ds, 3, head=head, text_embeddings=T, epochs=30, lr=0.05, batch_size=16)
    assert m["top1"] >= 0.9 and m["steps"] == 30 * 4
    assert m["train_loss"] < 1.0


def test_templates_shipped_and_files(tmp_path):
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    import json
    from importlib import resources

    assert len(TEMPLATE_SETS["imagenet"]) == 80 and len(TEMPLATE_SETS["cifar"]) == 18
    assert list(TEMPLATE_SETS["imagenet"]) == [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    package = json.loads((resources.files("clip_benchmark") / "datasets" /
                          "en_zeroshot_classification_templates.json").read_text())
    assert list(TEMPLATE_SETS["cifar"]) == [t.replace("{c}", "{}") for t in package["cifar10"]]
    assert load_templates("flowers102") == [t.replace("{c}", "{}") for t in package["flowers"]]
    f = tmp_path / "t.txt"
    f.write_text("# mine\na drawing of a {}.\n\nan {} here\n")
    assert load_templates(str(f)) == ["a drawing of a {}.", "an {} here"]
    f.write_text("no placeholder\n")
    with pytest.raises(ValueError, match="exactly one"):
        load_templates(str(f))
    with pytest.raises(ValueError, match="not a set .* and not a file"):
        load_templates("nope")
    c = tmp_path / "c.txt"
    c.write_text("cat\ndog\n")
    assert load_classnames(c, 2) == ["cat", "dog"]
    with pytest.raises(ValueError, match="3 classes"):
        load_classnames(c, 3)


def _fake_run(root, name, method, seed, top1, dataset="cifar10-test"):
    run = root / name
    (run / "eval").mkdir(parents=True)
    (run / "config.yaml").write_text(f"method: {method}\nseed: {seed}\nmodel: cloob-rn-tiny\n")
    (run / "eval" / f"zeroshot-{dataset}.json").write_text(json.dumps(
        {"evaluator": "zeroshot", "dataset": f"{dataset}:", "dataset_slug": dataset, "method": method,
         "metrics": {"top1": top1, "n": 100, "per_class/cat": 0.5}}))


def test_compare_marks_significance_like_scipy(tmp_path):
    from scipy.stats import ttest_ind

    clip = [0.20, 0.21, 0.19, 0.205, 0.2]
    cloob = [0.24, 0.239, 0.242, 0.238, 0.241]
    close = ([0.5, 0.52, 0.48], [0.51, 0.49, 0.5])
    for i, (a, b) in enumerate(zip(clip, cloob)):
        _fake_run(tmp_path, f"clip-{i}", "clip", i, a)
        _fake_run(tmp_path, f"cloob-{i}", "cloob", i, b)
    for i, (a, b) in enumerate(zip(*close)):
        (tmp_path / f"clip-{i}" / "eval" / "zeroshot-scenes.json").write_text(json.dumps(
            {"evaluator": "zeroshot", "dataset_slug": "scenes", "metrics": {"top1": a}}))
        (tmp_path / f"cloob-{i}" / "eval" / "zeroshot-scenes.json").write_text(json.dumps(
            {"evaluator": "zeroshot", "dataset_slug": "scenes", "metrics": {"top1": b}}))
    out = tmp_path / "cmp"
    res = cmp.compare_runs([str(tmp_path / "clip-*"), str(tmp_path / "cloob-*")], out)
    rows = {(r["dataset"], r["metric"]): r for r in res["rows"]}
    assert set(rows) == {("cifar10-test", "top1"), ("scenes", "top1")}  # n, per_class/* skipped
    for ds, (a, b) in (("cifar10-test", (clip, cloob)), ("scenes", close)):
        t = rows[(ds, "top1")]["tests"][0]
        p = ttest_ind(a, b, equal_var=False).pvalue
        assert t["p"] == pytest.approx(p)
        assert t["significant"] == (p < 0.05)
        assert rows[(ds, "top1")]["groups"]["clip"]["std"] == pytest.approx(np.std(a, ddof=1))
    assert rows[("cifar10-test", "top1")]["tests"][0]["better"] == "cloob"
    assert not rows[("scenes", "top1")]["tests"][0]["significant"]
    md = (out / "compare.md").read_text()
    assert "**0.24 ± 0.0016 (5)**" in md and "| 0.201 ± 0.0074 (5) |" in md
    csv_text = (out / "compare.csv").read_text().splitlines()
    assert csv_text[0].startswith("evaluator,dataset,metric,clip_mean")
    assert json.loads((out / "compare.json").read_text())["rows"][0]["tests"][0]["p"] is not None


def test_compare_groups_by_several_config_keys(tmp_path):
    from scipy.stats import ttest_ind

    vals = {("clip", 150): [0.3, 0.32], ("clip", 600): [0.5, 0.52], ("cloob", 150): [0.2, 0.23],
            ("cloob", 600): [0.55, 0.56]}
    for (method, steps), vs in vals.items():
        for i, v in enumerate(vs):
            _fake_run(tmp_path, f"{method}-{steps}-{i}", method, i, v)
            cfg = tmp_path / f"{method}-{steps}-{i}" / "config.yaml"
            cfg.write_text(cfg.read_text() + f"max_steps: {steps}\n")
    res = cmp.compare_runs([str(tmp_path / "*")], tmp_path / "cmp", group_by="method,max_steps",
                           baseline="clip/600")
    assert res["groups"] == ["clip/150", "clip/600", "cloob/150", "cloob/600"]
    row = res["rows"][0]
    assert row["groups"]["cloob/600"]["n"] == 2
    test = next(t for t in row["tests"] if t["b"] == "cloob/600")
    assert test["p"] == pytest.approx(ttest_ind(vals[("clip", 600)], vals[("cloob", 600)], equal_var=False).pvalue)
    with pytest.raises(ValueError, match="no 'method,seedless'"):
        cmp.compare_runs([str(tmp_path / "*")], tmp_path / "cmp2", group_by="method,seedless")


def test_compare_keeps_backbone_and_embedding_results_of_one_evaluator_apart(tmp_path):
    for i, (emb, bb) in enumerate([(0.5, 0.7), (0.52, 0.74)]):
        _fake_run(tmp_path, f"clip-{i}", "clip", i, emb)
        run = tmp_path / f"clip-{i}"
        result = json.loads((run / "eval" / "zeroshot-cifar10-test.json").read_text())
        result.update(evaluator="linear-probe", features="backbone", metrics={"top1": bb})
        (run / "eval" / "linear-probe-backbone-cifar10-test.json").write_text(json.dumps(result))
        result.update(features="embedding", metrics={"top1": emb})
        (run / "eval" / "linear-probe-cifar10-test.json").write_text(json.dumps(result))
    res = cmp.compare_runs([str(tmp_path / "*")], tmp_path / "cmp")
    means = {(r["evaluator"], r["metric"]): r["groups"]["clip"]["mean"] for r in res["rows"]}
    assert means[("linear-probe", "top1")] == pytest.approx(0.51)
    assert means[("linear-probe-backbone", "top1")] == pytest.approx(0.72)


@pytest.mark.parametrize("n_classes", [3, 2])
def test_lp_ft_head_starts_as_the_probes_classifier(n_classes):
    """The head from probe_head_init gives the sklearn probe's logits; untrained (0 epochs) its accuracy."""
    from cloob.evals.finetune import probe_head_init
    from cloob.evals.linear_probe import fit_probe

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(n_classes), 30)
    x = torch.eye(3)[y] + 0.6 * torch.from_numpy(rng.standard_normal((len(y), 3))).float()
    ds = TensorDataset(x, y, CLASSES[:n_classes])
    model = LinearMaps()
    W, b, info = probe_head_init(model, ds, n_classes, batch_size=16, seed=0)
    feats = nn.functional.normalize(x, dim=-1).numpy()
    clf, ref = fit_probe(feats, y, seed=0)
    decision = clf.decision_function(feats)
    logits = (torch.from_numpy(feats) @ W.T + b).numpy()
    if n_classes == 2:  # one logit in sklearn: the second class against the first
        np.testing.assert_allclose(logits[:, 1] - logits[:, 0], decision, rtol=0, atol=1e-4)
    else:
        np.testing.assert_allclose(logits, decision, rtol=0, atol=1e-4)
    assert info["probe_C"] == ref["C"]
    m, _ = finetune(model, ds, ds, n_classes, head="linear", epochs=0, batch_size=16, head_init=(W, b))
    assert m["steps"] == 0 and m["top1"] == pytest.approx(np.mean(clf.predict(feats) == y))
