import json

import pytest
import timm
from safetensors.torch import load_file

from scarce.config import load_config
from scarce.engine.trainer import train
from scarce.losses import LOSS_NAMES
from tests.conftest import TINY, make_image_folder


@pytest.fixture(scope="module")
def four_classes(tmp_path_factory):
    """A small RGB folder (4 classes; 8 train, 5 val, 4 test images each): seconds per loss."""
    return make_image_folder(
        tmp_path_factory.mktemp("losses") / "data",
        classes=("a", "b", "c", "d"),
        per_split={"train": 8, "val": 5, "test": 4},
    )


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_two_epoch_smoke_for_every_loss(tmp_path, loss, four_classes):
    cfg = load_config(None, TINY + [f"loss.name={loss}", "batch_size=8"], {"data": {"name": str(four_classes)}})
    summary = train(cfg, tmp_path / loss, progress=False)
    calibration = json.loads((tmp_path / loss / "calibration.json").read_text())
    expected_source = {
        "cosine_ce": "cosine",
        "focal_cosine": "cosine",
        "cosine": "cosine",
        "focal_cosine_authors": "cosine",
    }.get(loss, "logits")
    assert calibration["source"] == expected_source
    assert calibration["temperature"] > 0
    # T minimises val NLL over a range that contains T=1, so NLL cannot get worse.
    assert calibration["nll_val_after"] <= calibration["nll_val_before"] + 1e-6
    # scored on the 16 test images: top-1 is a whole number of them
    assert summary["test"]["count"] == 16 and summary["test"]["top1"] * 16 == pytest.approx(
        round(summary["test"]["top1"] * 16)
    )
    assert summary["calibration"]["n_val"] == 20
    # The backbone stays plain timm weights; head g (if any) sits beside it.
    backbone = load_file(str(tmp_path / loss / "best.safetensors"))
    assert set(backbone) == set(timm.create_model("test_resnet", num_classes=4, in_chans=3).state_dict())
    head_file = tmp_path / loss / "best.head_g.safetensors"
    assert head_file.is_file() == (loss in ("cosine_ce", "focal_cosine"))
