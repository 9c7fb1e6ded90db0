"""Every shipped recipe trains as shipped (loss, augmentation, EMA, mixup, and the CPU speed
switches it leaves on auto), shrunk only in size: the paper's recipe once crashed in the auto
speed probe before its first epoch, which no test saw because the tests pin amp and
channels_last."""

import json

import pytest

from scarce.cli import main
from scarce.config_parse import available_recipes

# smaller, never different in kind: model, size, batch, epochs and data only
SHRINK = ["epochs=1", "batch_size=16", "model.name=test_resnet", "data.img_size=16", "data.num_workers=0"]


@pytest.mark.parametrize("recipe", available_recipes())
def test_shipped_recipe_trains_one_tiny_epoch(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    data = [] if recipe == "fashion-mnist-50" else ["--data", "demo"]  # vipriors: a folder of the user's
    extra = ["data.per_class=5", "data.val_per_class=5"] if recipe == "fashion-mnist-50" else []
    assert main(["train", "--recipe", recipe, *data, "--out", str(out), "--no-progress", *SHRINK, *extra]) == 0, (
        capsys.readouterr().err
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["last"]["epoch"] == 0 and 0.0 <= summary["test"]["top1"] <= 1.0
