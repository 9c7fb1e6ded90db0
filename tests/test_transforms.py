"""The train crop modes on exact pixels."""

import torch
from PIL import Image

from scarce.config import AugmentConfig, DataConfig
from scarce.data.transforms import EvalTransform, TrainTransform


def _ramp(size: int = 8) -> Image.Image:
    return Image.fromarray((torch.arange(size * size).reshape(size, size) + 1).to(torch.uint8).numpy())


def test_pad_crop_only_shifts_the_whole_image_within_its_padding():
    data = DataConfig(img_size=8)
    transform = TrainTransform(data, AugmentConfig(crop="pad", pad=2, hflip=0.0), fill=[0])
    img = _ramp()
    padded = torch.nn.functional.pad(torch.from_numpy(__import__("numpy").asarray(img))[None], (2, 2, 2, 2))
    shifts = set()
    torch.manual_seed(0)
    for _ in range(60):
        out = transform(None, 0, img)
        assert out.shape == (1, 8, 8) and out.dtype == torch.uint8
        matches = [
            (dy, dx) for dy in range(5) for dx in range(5) if torch.equal(out, padded[:, dy : dy + 8, dx : dx + 8])
        ]
        assert len(matches) == 1, "every view is the padded image at one integer offset"
        shifts.add(matches[0])
    assert len(shifts) > 10  # the offsets cover the +-2 px range
    assert (2, 2) in shifts


def test_pad_crop_with_zero_pad_is_the_evaluation_view():
    data = DataConfig(img_size=8, crop_pct=1.0)
    transform = TrainTransform(data, AugmentConfig(crop="pad", pad=0, hflip=0.0), fill=[0])
    img = _ramp(16)
    assert torch.equal(transform(None, 0, img), EvalTransform(data)(None, 0, img))


def test_resized_crop_stays_the_default():
    assert AugmentConfig().crop == "resized"


def test_small_images_pad_keeps_the_pixels_centred_in_a_zero_frame():
    data = DataConfig(img_size=12, small_images="pad")
    img = _ramp(8)
    out = EvalTransform(data)(None, 0, img)
    assert out.shape == (1, 12, 12)
    assert torch.equal(out[:, 2:10, 2:10], torch.from_numpy(__import__("numpy").asarray(img))[None])
    assert out.sum() == out[:, 2:10, 2:10].sum()  # the frame is zeros
    big = _ramp(16)  # larger than img_size: resized down as before
    assert torch.equal(EvalTransform(data)(None, 0, big), EvalTransform(DataConfig(img_size=12))(None, 0, big))
    train = TrainTransform(data, AugmentConfig(crop="pad", pad=0, hflip=0.0), fill=[0])
    assert torch.equal(train(None, 0, img), out)  # pad 0: the training view is the evaluation view


def test_resize_stays_the_default_for_small_images():
    out = EvalTransform(DataConfig(img_size=12))(None, 0, _ramp(8))
    assert out.shape == (1, 12, 12) and int(out[0, 0, 0]) > 0  # resized up: no zero frame


def test_crop_settings_that_would_train_and_evaluate_differently_are_refused(tmp_path, capsys):
    from scarce.cli import main
    from tests.conftest import TINY

    assert main(["train", "--out", str(tmp_path / "a"), *TINY, "data.small_images=pad"]) == 2
    assert "data.small_images=pad needs augment.crop=pad" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "b"), *TINY, "augment.crop=pad", "data.crop_pct=0.875"]) == 2
    assert "needs data.crop_pct=1.0" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
