"""The train crop modes on exact pixels; the RandAugment strings taken."""

import re

import pytest
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


def test_randaugment_strings_timm_reads_as_written_are_accepted():
    from scarce.data.transforms import create_randaugment, randaugment_sections

    assert randaugment_sections("rand-m9-mstd0.5") == {"m": 9, "mstd": 0.5}
    assert randaugment_sections("rand-n1-m9-mstd0-inc0") == {"n": 1, "m": 9, "mstd": 0.0, "inc": 0}
    assert randaugment_sections("rand-m30-mmax30-p1-tweights") == {"m": 30, "mmax": 30, "p": 1.0, "t": "weights"}
    assert randaugment_sections("rand") == {}
    ra = create_randaugment("rand-m7-n3-t3a", 16, [0])
    assert ra.num_layers == 3 and len(ra.ops) == 3 and {op.magnitude for op in ra.ops} == {7}


@pytest.mark.parametrize(
    "config_str, message",
    [
        ("rand-xx", "section 'xx' is not one timm reads; valid: m<magnitude 0-10"),
        ("rand-m9-xx", "section 'xx' is not one timm reads; valid: m<magnitude 0-10"),
        ("rand-m99", "magnitude m99 is above 10, where timm clips it; use m0-m10, or up to m30 with mmax30"),
        ("rand-m40-mmax30", "magnitude m40 is above 30, where timm clips it; use m0-m30"),
        ("rand-mmax31", r"section mmax31 out of range \(mmax 1-30\)"),
        ("rand-m9.5", "section 'm9.5' is not one timm reads"),
        ("rand-p1.5", r"section p1.5 out of range \(p 0-1\)"),
        ("rand-n0", r"section n0 out of range \(n >= 1\)"),
        ("rand-tfoo", "section 'tfoo' is not one timm reads; valid: .*tweights\\|t3a\\|t3aw"),
        ("rand-m9-m5", "section m is given twice"),
        ("rand-tweights-n16", "n16 is more ops per image than tweights has \\(15\\)"),
        (
            "m9",
            "a timm RandAugment string starts with 'rand' \\(like rand-m9-mstd0.5\\), got 'm9'; sections after it: m<magnitude",
        ),
    ],
)
def test_randaugment_strings_timm_would_misread_are_refused_in_one_line(config_str, message):
    from scarce.data.transforms import create_randaugment
    from scarce.errors import UserError

    with pytest.raises(UserError, match=f"^augment.randaugment '{re.escape(config_str)}': {message}") as caught:
        create_randaugment(config_str, 16, [0])
    assert "\n" not in str(caught.value) and "()" not in str(caught.value)


def test_bad_randaugment_string_fails_the_command_with_exit_2(tmp_path, capsys):
    from scarce.cli import main

    argv = ["augment", "preview", "demo", "augment.randaugment=rand-m9-xx", "--out", str(tmp_path / "g.png")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scarce augment: error: augment.randaugment 'rand-m9-xx': section 'xx'") and "\n" not in err
    assert not (tmp_path / "g.png").exists()
