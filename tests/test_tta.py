"""Deterministic TTA: views keyed by image id, one data pass, soft voting."""

import random

import numpy as np
import pytest
import timm
import torch
from PIL import Image, ImageOps

from scarce.config import AugmentConfig, DataConfig
from scarce.data.datasets import ImageDataset, folder_split
from scarce.data.loader import build_eval_loader
from scarce.data.transforms import EvalTransform, create_randaugment
from scarce.engine.batch import BatchPreprocessor
from scarce.engine.loop import predict_outputs
from scarce.inference.tta import TTATransform, seeded_global_rngs, tta_predict, tta_views, view_seed
from scarce.models.heads import prediction_probs
from tests.conftest import make_image_folder

DATA = DataConfig(img_size=16, crop_pct=0.875)
AUGMENT = AugmentConfig(hflip=0.5, randaugment="rand-m9-mstd0.5")
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
FILL = [128, 128, 128]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("tta") / "data", per_split={"test": 7}, size=22)
    return folder_split(root / "test")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return timm.create_model("test_resnet", pretrained=False, num_classes=3).eval()


def _image(seed=0):
    arr = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


def _predict(split, model, views, order=None, batch_size=4, workers=0, per_view=False, seed=0):
    """Per-view or soft-voted probabilities and ids, in ``order`` of the split's rows."""
    order = list(range(len(split.ids))) if order is None else order
    shuffled = type(split)(
        ids=[split.ids[i] for i in order],
        targets=[split.targets[i] for i in order],
        classes=split.classes,
        root=split.root,
    )
    dataset = ImageDataset(shuffled, "RGB", TTATransform(DATA, AUGMENT, FILL, views, seed))
    loader = build_eval_loader(dataset, batch_size, workers)
    probs, targets = tta_predict(
        model,
        loader,
        BatchPreprocessor(MEAN, STD, torch.device("cpu")),
        prediction_probs,
        chunk_size=batch_size,
        per_view=per_view,
    )
    return probs, targets, shuffled.ids


def test_view_seed_is_stable_and_distinct():
    assert view_seed(0, 1, "cat/1.png") == view_seed(0, 1, "cat/1.png")
    seeds = {view_seed(s, v, i) for s in (0, 1) for v in (1, 2) for i in ("a.png", "b.png")}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)


def test_seeded_global_rngs_restores_callers_streams():
    random.seed(5)
    np.random.seed(5)
    expected = (random.random(), np.random.rand())
    random.seed(5)
    np.random.seed(5)
    with seeded_global_rngs(123):
        inside = (random.random(), np.random.rand())
    assert (random.random(), np.random.rand()) == expected
    with seeded_global_rngs(123):
        assert (random.random(), np.random.rand()) == inside


def test_views_are_keyed_by_id_view_and_seed():
    img = _image()
    ra = create_randaugment("rand-m9-mstd0.5", 16, FILL)
    a = tta_views(img, "x.png", 4, seed=0, randaugment=ra)
    assert a.shape == (4, 3, 16, 16) and a.dtype == torch.uint8
    assert torch.equal(a[0], torch.from_numpy(np.array(img)).permute(2, 0, 1))  # view 0 is clean
    assert torch.equal(a, tta_views(img, "x.png", 4, seed=0, randaugment=ra))
    assert torch.equal(a[2:3], tta_views(img, "x.png", [2], seed=0, randaugment=ra))  # a view alone = in a set
    other_id = tta_views(img, "y.png", 4, seed=0, randaugment=ra)
    other_seed = tta_views(img, "x.png", 4, seed=1, randaugment=ra)
    assert not torch.equal(a[2:], other_id[2:]) and not torch.equal(a[2:], other_seed[2:])
    mirrored = torch.from_numpy(np.array(ImageOps.mirror(img))).permute(2, 0, 1)
    assert torch.equal(a[1], mirrored) and torch.equal(a[1], other_id[1])  # view 1: the plain mirror
    later_mirrors = tta_views(img, "x.png", 8, seed=0, randaugment=ra)[3::2]  # views 3, 5, 7
    assert any(not torch.equal(v, mirrored) for v in later_mirrors)  # they go through RandAugment too
    without_flip = tta_views(img, "x.png", 8, seed=0, flip=False, randaugment=ra)
    with seeded_global_rngs(view_seed(0, 1, "x.png")):  # no mirror: RandAugment from view 1
        expected = torch.from_numpy(np.array(ra(img))).permute(2, 0, 1)
    assert torch.equal(without_flip[1], expected)
    assert any(not torch.equal(v, a[0]) for v in without_flip[1:])


def test_without_randaugment_odd_views_are_mirrors():
    img = _image(1)
    v = tta_views(img, "x.png", 3)
    mirrored = torch.from_numpy(np.array(ImageOps.mirror(img))).permute(2, 0, 1)
    assert torch.equal(v[1], mirrored) and torch.equal(v[2], v[0])
    assert torch.equal(tta_views(img, "x.png", 2, flip=False)[1], v[0])


def test_order_batch_size_and_workers_do_not_change_results(split, model):
    probs, targets, ids = _predict(split, model, 3)
    order = list(np.random.default_rng(0).permutation(len(ids)))
    shuffled, shuffled_targets, shuffled_ids = _predict(split, model, 3, order, batch_size=3, workers=1)
    assert len(probs) == len(ids) == 21  # every image kept, none padded
    assert targets.tolist() == split.targets and list(ids) == split.ids  # loader order preserved
    back = [shuffled_ids.index(i) for i in ids]
    torch.testing.assert_close(shuffled[back], probs, rtol=1e-5, atol=1e-6)
    assert shuffled_targets[back].tolist() == targets.tolist()
    other_seed, _, _ = _predict(split, model, 3, seed=1)
    assert not torch.allclose(other_seed, probs, atol=1e-4)  # the views really are augmented


def test_view_zero_is_plain_prediction_and_soft_vote_is_mean(split, model):
    per_view, _, _ = _predict(split, model, 3, per_view=True)
    plain_set = ImageDataset(split, "RGB", EvalTransform(DATA))
    pre = BatchPreprocessor(MEAN, STD, torch.device("cpu"))
    plain = torch.cat([prediction_probs(o) for o, _ in predict_outputs(model, build_eval_loader(plain_set, 4, 0), pre)])
    assert per_view.shape == (21, 3, 3)
    torch.testing.assert_close(per_view[:, 0], plain, rtol=1e-5, atol=1e-6)
    voted, _, _ = _predict(split, model, 3)
    torch.testing.assert_close(voted, per_view.mean(dim=1))
    torch.testing.assert_close(voted.sum(dim=1), torch.ones(21))


def test_transform_rejects_no_views():
    with pytest.raises(ValueError, match="views"):
        TTATransform(DATA, AUGMENT, FILL, 0)
