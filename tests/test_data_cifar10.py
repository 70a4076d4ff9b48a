"""CIFAR-10 from the shared tars; pretraining captions disjoint from the zero-shot prompts."""
import pytest

from cloob.data import open_labelled, open_pairs, shared_dir
from cloob.data import cifar10 as C

CIFAR_DIR = shared_dir() / "data" / "cifar10"
needs_cifar = pytest.mark.skipif(not (CIFAR_DIR / "test.tar").is_file(),
                                 reason=f"CIFAR-10 tars not found at {CIFAR_DIR} (set CLOOB_SHARED to the shared dir)")


def _norm(s: str) -> str:
    return s.lower().rstrip(".").replace(" an ", " a ").strip()


def test_pretrain_templates_are_disjoint_from_zero_shot_prompts():
    from cloob.evals.prompts import templates

    # the data layer keeps its own copy (it imports no evaluation code): it must be the evaluations' set
    assert list(C.CIFAR_ZEROSHOT_TEMPLATES) == templates("cifar10")
    assert not set(C.PRETRAIN_TEMPLATES) & set(C.CIFAR_ZEROSHOT_TEMPLATES)
    zero_shot = {_norm(t.format(name)) for t in C.CIFAR_ZEROSHOT_TEMPLATES
                 for cls in C.CLASSES for name in C.SYNONYMS[cls]}
    pretrain = {_norm(c) for c in C.all_pretrain_captions()}
    assert not zero_shot & pretrain


def test_captions_are_deterministic_in_seed_and_index_and_name_the_class():
    caps = [C.caption(i % 10, 0, i) for i in range(200)]
    assert caps == [C.caption(i % 10, 0, i) for i in range(200)]
    assert caps != [C.caption(i % 10, 1, i) for i in range(200)]
    assert len(set(caps)) > 100
    for i, c in enumerate(caps):
        assert any(syn in c for syn in C.SYNONYMS[C.CLASSES[i % 10]])


def test_missing_dir_raises_clear_error(tmp_path):
    from cloob.data import DataError

    with pytest.raises(DataError, match="CIFAR-10 test archive not found"):
        open_labelled(f"cifar10-test:{tmp_path}", image_transform=None)


@needs_cifar
def test_test_split_reads_labelled_images_from_the_tar():
    ds = open_labelled(f"cifar10-test:{CIFAR_DIR}", image_transform=None)
    assert len(ds) == 10000 and ds.classes == list(C.CLASSES)
    for i in (0, 4321, 9999):
        img, label = ds[i]
        assert img.size == (32, 32) and img.mode == "RGB"
        assert ds.items[i][0].split("/")[-2] == C.CLASSES[label]
    assert open_labelled(f"cifar10:{CIFAR_DIR / 'test.tar'}", image_transform=None).items == ds.items


@needs_cifar
def test_train_caption_view():
    ds = open_pairs(f"cifar10-captions:{CIFAR_DIR}", image_transform=None, tokenizer=None)
    assert len(ds) == 50000
    img, cap = ds[12345]
    label = ds.images.items[12345][1]
    assert img.size == (32, 32) and cap == C.caption(label, 0, 12345)
