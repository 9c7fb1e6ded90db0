"""auto resolution, epochs and warmup: the rules on exact values, and the run's config."""
import yaml

from scarce.cli import main
from scarce.config import load_config
from scarce.data import build_data
from scarce.engine.auto_budget import auto_epochs, auto_img_size, resolve_auto_budget
from tests.conftest import TINY, make_image_folder


def test_resolution_rounds_the_median_shorter_side_up_to_a_multiple_of_32_within_32_224():
    assert auto_img_size([28, 28, 28]) == 32
    assert auto_img_size([20, 64, 70]) == 64
    assert auto_img_size([65]) == 96
    assert auto_img_size([8]) == 32 and auto_img_size([3000, 4000]) == 224


def test_epochs_give_at_least_100_epochs_and_800_steps():
    assert auto_epochs(8) == 100    # Fashion-MNIST 50/class at batch 64
    assert auto_epochs(2) == 400    # 10/class: more epochs, same number of steps
    assert auto_epochs(16) == 100 and auto_epochs(0) == 800


def test_resolve_reads_the_folder_and_says_how(tmp_path):
    root = make_image_folder(tmp_path / "data", per_split={"train": 10}, size=48)
    cfg = load_config(None, ["epochs=auto", "data.img_size=auto", "sched.warmup_epochs=auto", "batch_size=8",
                             "augment.pad=auto"], {"data": {"name": str(root)}})
    data = build_data(cfg.data)
    resolved, notes = resolve_auto_budget(cfg, data.splits["train"])
    # 30 images, 27 after the 10 % val split: 4 steps of 8 -> 200 epochs, 15 % warmup
    assert (resolved.data.img_size, resolved.epochs, resolved.sched.warmup_epochs) == (64, 200, 30.0)
    assert resolved.augment.pad == 4  # 64 / 16
    assert len(notes) == 4 and notes[0].startswith("data.img_size auto: 64 px (median shorter side 48 px")
    unchanged, none = resolve_auto_budget(load_config(None, ["epochs=3"]), data.splits["train"])
    assert none == [] and unchanged.epochs == 3


def test_a_run_saves_the_resolved_numbers(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", per_split={"train": 6, "val": 2}, size=20)
    out = tmp_path / "run"
    args = ["train", "--data", str(root), "--out", str(out), "--no-progress", *TINY, "data.img_size=auto",
            "sched.warmup_epochs=auto"]
    assert main(args) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["img_size"] == 32 and saved["sched"]["warmup_epochs"] == 0.3
    assert "data.img_size auto: 32 px" in capsys.readouterr().out


def test_the_small_recipe_runs_on_a_folder_with_its_budget_resolved(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", per_split={"train": 6, "test": 2}, size=40)
    out = tmp_path / "run"
    # the model and epochs are overridden to keep the test short; size, pad and warmup stay auto
    assert main(["train", "--recipe", "small", "--data", str(root), "--out", str(out), "--no-progress",
                 "epochs=1", "model.name=test_resnet", "data.num_workers=0"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["data"]["img_size"], saved["augment"]["pad"], saved["sched"]["warmup_epochs"]) == (64, 4, 0.15)
    printed = capsys.readouterr().out
    assert "data.img_size auto: 64 px" in printed and "augment.pad auto: 4 px" in printed
