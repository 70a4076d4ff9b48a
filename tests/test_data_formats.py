"""Each format round-trips the same pairs; transforms follow open_clip."""
import numpy as np
import pytest
import torch
from torchvision import transforms as T

from cloob.data import image_transform, make_loader, open_labelled, open_pairs, open_retrieval, texts, text_image
from cloob.data.csvfile import write_csv
from cloob.data.folder import write_folder
from cloob.data.wds import write_wds


def _read_all(ds):
    return [ds[i] for i in range(len(ds))] if hasattr(ds, "__getitem__") and hasattr(ds, "__len__") else list(ds)


def _same(got, pairs):
    assert len(got) == len(pairs)
    for (img, cap), (ref, ref_cap) in zip(got, pairs):
        assert cap == ref_cap
        assert np.array_equal(np.asarray(img), np.asarray(ref))


@pytest.mark.parametrize("name", ["pairs.csv", "pairs.tsv"])
def test_csv_and_tsv_roundtrip(tmp_path, pairs, name):
    f = write_csv(pairs, tmp_path / name)
    sep = "\t" if name.endswith("tsv") else ","
    assert f.read_text().splitlines()[0] == f"filepath{sep}title"
    _same(_read_all(open_pairs(str(f), image_transform=None, tokenizer=None)), pairs)


def test_csv_custom_keys_and_separator_relative_to_csv(tmp_path, pairs):
    sub = tmp_path / "deep"
    f = write_csv(pairs, sub / "x.txt", csv_img_key="img", csv_caption_key="cap", csv_separator="|")
    from cloob.data.csvfile import CsvPairs

    ds = CsvPairs(f, image_transform=None, tokenizer=None, csv_img_key="img", csv_caption_key="cap",
                  csv_separator="|")
    _same(_read_all(ds), pairs)


def test_webdataset_roundtrip_with_brace_pattern(tmp_path, pairs):
    spec = write_wds(pairs, tmp_path / "shards", per_shard=4)
    assert "{000000..000001}" in spec
    for s in (spec, "wds:" + spec):
        _same(list(open_pairs(s, image_transform=None, tokenizer=None)), pairs)


def test_folder_and_tar_of_folders_roundtrip(tmp_path, pairs):
    items = [(img, ["cat", "dog", "sea_lion"][i % 3]) for i, (img, _) in enumerate(pairs)]
    root = write_folder(items, tmp_path / "root", as_tar=str(tmp_path / "root.tar"))
    for spec in (str(tmp_path / "root"), str(root)):
        ds = open_labelled(spec, image_transform=None)
        assert ds.classes == ["cat", "dog", "sea lion"]
        got = sorted((np.asarray(x).tobytes(), ds.classes[y]) for x, y in _read_all(ds))
        want = sorted((np.asarray(img).tobytes(), c.replace("_", " ")) for img, c in items)
        assert got == want


def test_csv_retrieval_groups_rows_by_image(tmp_path, pairs):
    f = write_csv(pairs[:2], tmp_path / "r.csv")
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines + [lines[1].split(",")[0] + ",another caption"]) + "\n")
    ds = open_retrieval(str(f), image_transform=None)
    assert len(ds) == 2 and ds.captions[0] == [pairs[0][1], "another caption"]
    assert texts(ds)[:2] == ds.captions[0] and text_image(ds) == [0, 0, 1]
    assert np.array_equal(np.asarray(ds[1][0]), np.asarray(pairs[1][0]))


def test_loader_gives_float_images_and_long_tokens(tmp_path, pairs):
    from cloob.models import get_tokenizer

    tok = get_tokenizer("cloob-rn-tiny")
    f = write_csv(pairs, tmp_path / "p.csv")
    ds = open_pairs(str(f), image_transform=image_transform(32, train=True, augment=True), tokenizer=tok)
    images, tokens = next(iter(make_loader(ds, 4, shuffle=True, seed=0)))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert tokens.dtype == torch.long and tokens.shape == (4, tok(["x"]).shape[1])


def test_image_transform_resize_and_augmentations():
    bic = image_transform(48, train=False)
    bil = image_transform(48, train=False, resize="bilinear")
    modes = [t.interpolation for t in bic.transforms if isinstance(t, T.Resize)]
    assert modes == [T.InterpolationMode.BICUBIC]
    assert [t.interpolation for t in bil.transforms if isinstance(t, T.Resize)] == [T.InterpolationMode.BILINEAR]
    aug = image_transform(48, train=True, augment=True)
    to_tensor = next(i for i, t in enumerate(aug.transforms) if isinstance(t, T.ToTensor))
    for k in (T.RandomHorizontalFlip, T.RandomPerspective, T.RandomRotation, T.GaussianBlur):
        assert sum(isinstance(t, k) for t in aug.transforms[:to_tensor]) == 1
    blur = next(t for t in aug.transforms if isinstance(t, T.GaussianBlur))
    assert blur.kernel_size == (3, 3) and blur.sigma == (0.1, 2.0)
    rot = next(t for t in aug.transforms if isinstance(t, T.RandomRotation))
    assert rot.degrees == [-20.0, 20.0]
    with pytest.raises(ValueError):
        image_transform(48, train=False, resize="nearest")


def test_image_transform_uses_model_preprocess_config():
    from types import SimpleNamespace

    visual = SimpleNamespace(preprocess_cfg={"size": (40, 40), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)})
    tf = image_transform(SimpleNamespace(clip=SimpleNamespace(visual=visual)), train=False)
    norm = tf.transforms[-1]
    assert tuple(norm.mean) == (0.5, 0.5, 0.5) and tuple(norm.std) == (0.25, 0.25, 0.25)
    from PIL import Image

    assert tf(Image.new("RGB", (10, 10))).shape == (3, 40, 40)


def test_spec_slug_names_a_spec_once_for_files_and_metric_keys():
    from cloob.data import spec_slug

    cases = {  # spec: (file name part, metric key part)
        "scenes-scene:/x/cache": ("scenes-scene-cache", "scenes-scene"),
        "cifar10-test:": ("cifar10-test", "cifar10-test"),
        "/d/pairs.csv": ("pairs", "pairs"),
        "/d/shards.tar": ("shards", "shards"),
        "birdsnap:/data/root": ("birdsnap-root", "birdsnap"),
        "/a/imagenet/val/": ("val", "val"),
        "my data/x y.tsv": ("x-y", "x-y"),
    }
    for spec, (long, short) in cases.items():
        assert (spec_slug(spec), spec_slug(spec, short=True)) == (long, short), spec
