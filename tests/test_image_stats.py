"""Statistics of the train images: augment.fill (the colour of uncovered pixels) and data.normalize=train."""

import numpy as np
import pytest
import torch
from PIL import Image

from scarce.config import AugmentConfig, DataConfig
from scarce.data.datasets import Split
from scarce.data.image_stats import border_pixels, edge_colour, pixel_mean_std, resolve_fill
from scarce.data.transforms import TrainTransform, create_randaugment
from scarce.errors import UserError


def _split(images: list[np.ndarray]) -> Split:
    return Split(
        ids=[str(i) for i in range(len(images))], targets=[0] * len(images), classes=["a"], array=np.stack(images)
    )


def test_border_pixels_is_the_outer_ring_once_each():
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    ring = border_pixels(img)
    assert ring.shape == (12, 1)
    assert sorted(ring[:, 0].tolist()) == [0, 1, 2, 3, 4, 7, 8, 11, 12, 13, 14, 15]
    assert border_pixels(np.zeros((5, 6, 3), np.uint8)).shape == (2 * 5 + 2 * 6 - 4, 3)


def test_edge_colour_is_the_median_border_colour_not_the_mean():
    dark = np.zeros((6, 6), np.uint8)
    dark[2:4, 2:4] = 255  # a bright object on a black background
    bright_edge = np.full((6, 6), 200, np.uint8)
    assert edge_colour(_split([dark, dark, bright_edge]), "L") == [0]
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 255, 30
    assert edge_colour(_split([rgb]), "RGB") == [255, 0, 30]


def test_resolve_fill_edge_mean_and_grey_level():
    split = _split([np.full((4, 4), 7, np.uint8)])
    assert resolve_fill("edge", split, "L", [0.5]) == [7]
    assert resolve_fill("mean", split, "L", [0.449]) == [114]
    assert resolve_fill(255, split, "RGB", [0.5] * 3) == [255, 255, 255]


def test_pad_crop_paints_the_fill_colour():
    data = DataConfig(img_size=4, crop_pct=1.0)
    img = Image.fromarray(np.full((4, 4), 100, np.uint8))
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        out = TrainTransform(data, AugmentConfig(crop="pad", pad=2, hflip=0.0), fill=[9])(None, 0, img)
        seen |= set(out.unique().tolist())
    assert seen == {9, 100}  # shifted image plus the fill colour, nothing else


def test_randaugment_rotation_paints_the_fill_colour():
    img = Image.fromarray(np.full((16, 16), 100, np.uint8))
    ra = create_randaugment("rand-n1-m9-mstd0-inc0", 16, [3])
    ra.ops = [op for op in ra.ops if op.name == "Rotate"]  # only the rotation, at magnitude 9 (27 degrees)
    ra.ops[0].prob = 1.0
    out = np.asarray(ra(img))
    assert out[0, 0] == 3 and out[8, 8] == 100  # the corner uncovered, the centre kept


def test_pixel_mean_std_weights_every_pixel_equally():
    a = np.zeros((2, 2), np.uint8)  # 4 black pixels
    b = np.full((2, 2), 255, np.uint8)  # 4 white pixels
    mean, std = pixel_mean_std(_split([a, b]), "L")
    assert mean == [0.5] and std == [0.5]
    flat = np.full((3, 3, 3), 51, np.uint8)
    mean, std = pixel_mean_std(_split([flat]), "RGB")
    assert mean == [0.2, 0.2, 0.2] and std == [0.001] * 3  # a constant channel: floored, not zero


def test_normalize_train_measures_the_train_split():
    from scarce.config import DataConfig
    from scarce.data.loader import build_data

    bundle = build_data(DataConfig(name="demo", normalize="train"))
    assert bundle.mean == [0.2857] and bundle.std == [0.3503]  # Fashion-MNIST's own statistics
    assert build_data(DataConfig(name="demo")).mean == [float(np.mean((0.485, 0.456, 0.406)))]


def test_scoring_a_normalize_train_run_uses_its_saved_statistics(tmp_path, monkeypatch):
    from scarce.config import load_config
    from scarce.data import image_stats
    from scarce.engine.evaluation import evaluate_run
    from scarce.engine.trainer import train
    from tests.conftest import TINY

    run = tmp_path / "run"
    train(load_config(None, [*TINY, "epochs=1", "data.normalize=train"]), run, progress=False)
    score = dict(data=None, split="val", device="cpu", num_workers=0)
    before = evaluate_run(run, **score)

    def measured(*args, **kwargs):
        raise AssertionError("the train images were measured again")

    monkeypatch.setattr(image_stats, "pixel_mean_std", measured)
    assert evaluate_run(run, **score) == before


def test_unreadable_images_are_passed_over(tmp_path):
    Image.fromarray(np.full((4, 4), 40, np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    split = Split(ids=["bad.png", "good.png"], targets=[0, 0], classes=["a"], root=str(tmp_path))
    assert edge_colour(split, "L") == [40]
    assert pixel_mean_std(split, "L") == ([round(40 / 255, 4)], [0.001])
    only_bad = Split(ids=["bad.png"], targets=[0], classes=["a"], root=str(tmp_path))
    assert edge_colour(only_bad, "L") == [0]
    with pytest.raises(UserError, match="none of the 1 train images could be read"):
        pixel_mean_std(only_bad, "L")
