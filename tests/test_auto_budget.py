"""auto resolution, epochs and warmup: the rules on exact values, and the run's config."""

import yaml

from scarce.cli import main
from scarce.config import load_config
from scarce.data import build_data
from scarce.engine.auto_budget import auto_epochs, auto_img_size, resolve_auto_budget
from tests.conftest import TINY, make_image_folder


def test_resolution_rounds_the_median_shorter_side_up_to_a_multiple_of_32_within_32_224():
    assert auto_img_size([28, 28, 28]) == 64  # small images upsampled: 64 beat 32 px (BENCHMARKS.md)
    assert auto_img_size([20, 64, 70]) == 64
    assert auto_img_size([65]) == 96
    assert auto_img_size([8]) == 64 and auto_img_size([3000, 4000]) == 224


def test_epochs_give_at_least_300_epochs_and_2400_steps():
    assert auto_epochs(8) == 300  # Fashion-MNIST 50/class at batch 64
    assert auto_epochs(2) == 1200  # 10/class: more epochs, same number of steps
    assert auto_epochs(16) == 300 and auto_epochs(0) == 2400


def test_resolve_reads_the_folder_and_says_how(tmp_path):
    root = make_image_folder(tmp_path / "data", per_split={"train": 10}, size=48)
    cfg = load_config(
        None,
        ["epochs=auto", "data.img_size=auto", "sched.warmup_epochs=auto", "batch_size=8", "augment.pad=auto"],
        {"data": {"name": str(root)}},
    )
    data = build_data(cfg.data)
    resolved, notes = resolve_auto_budget(cfg, data.splits["train"])
    # 30 images, 27 after the 10 % val split: 3 steps of 8 (the last 3 images are dropped, as
    # the loader does) -> 800 epochs for 2400 steps, 15 % warmup
    assert (resolved.data.img_size, resolved.epochs, resolved.sched.warmup_epochs) == (64, 800, 120.0)
    assert resolved.augment.pad == 4  # 64 / 16
    assert len(notes) == 4 and notes[0].startswith("data.img_size auto: 64 px (median shorter side 48 px")
    unchanged, none = resolve_auto_budget(load_config(None, ["epochs=3"]), data.splits["train"])
    assert none == [] and unchanged.epochs == 3


def test_one_step_per_epoch_is_said_in_the_singular(tmp_path):
    from scarce.engine.auto_budget import resolve_auto_epochs

    root = make_image_folder(tmp_path / "data", per_split={"train": 3, "val": 1}, size=8)
    cfg = load_config(None, ["epochs=auto", "batch_size=8"], {"data": {"name": str(root)}})
    _, notes = resolve_auto_epochs(cfg, build_data(cfg.data).splits["train"])
    assert notes[0].startswith("epochs auto: 2400 (1 step per epoch;"), notes


def test_a_run_saves_the_resolved_numbers(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", per_split={"train": 6, "val": 2}, size=20)
    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(root),
        "--out",
        str(out),
        "--no-progress",
        *TINY,
        "data.img_size=auto",
        "sched.warmup_epochs=auto",
    ]
    assert main(args) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["img_size"] == 64 and saved["sched"]["warmup_epochs"] == 0.3
    assert "data.img_size auto: 64 px" in capsys.readouterr().out


def test_the_small_recipe_runs_on_a_folder_with_its_budget_resolved(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", per_split={"train": 6, "test": 2}, size=40)
    out = tmp_path / "run"
    # the model and epochs are overridden to keep the test short; size, pad and warmup stay auto
    assert (
        main(
            [
                "train",
                "--recipe",
                "small",
                "--data",
                str(root),
                "--out",
                str(out),
                "--no-progress",
                "epochs=1",
                "model.name=test_resnet",
                "data.num_workers=0",
            ]
        )
        == 0
    )
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["data"]["img_size"], saved["augment"]["pad"], saved["sched"]["warmup_epochs"]) == (64, 4, 0.15)
    printed = capsys.readouterr().out
    assert "data.img_size auto: 64 px" in printed and "augment.pad auto: 4 px" in printed


def test_resolution_reads_every_class_not_the_first_images(tmp_path):
    from tests.conftest import make_image_folder as make

    root = make(tmp_path / "a", classes=("small",), per_split={"train": 4}, size=28)
    make(tmp_path / "a", classes=("zlarge",), per_split={"train": 6}, size=100)  # sorted after: ids at the end
    cfg = load_config(None, ["data.img_size=auto", "data.val_fraction=0"], {"data": {"name": str(root)}})
    resolved, notes = resolve_auto_budget(cfg, build_data(cfg.data).splits["train"])
    assert resolved.data.img_size == 128 and "of 10 train images" in notes[0]  # median 100 px


def test_auto_epochs_count_the_steps_the_loader_takes(tmp_path):
    from scarce.data import build_dataset
    from scarce.data.loader import build_train_loader

    root = make_image_folder(tmp_path / "d", per_split={"train": 17}, size=20)  # 51 images
    for keep in (False, True):
        cfg = load_config(
            None,
            ["epochs=auto", "batch_size=16", "data.val_fraction=0", f"data.keep_last_batch={keep}", "data.img_size=16"],
            {"data": {"name": str(root)}},
        )
        data = build_data(cfg.data)
        loader = build_train_loader(build_dataset(data, "train", cfg.data, cfg.augment), 16, 0, 0, keep_last_batch=keep)
        resolved, _ = resolve_auto_budget(cfg, data.splits["train"])
        assert resolved.epochs * len(loader) >= 2400 > (resolved.epochs - 1) * len(loader)


def test_auto_epochs_count_only_the_images_the_scan_keeps(tmp_path):
    from scarce.engine.prepare import prepare_run

    root = make_image_folder(tmp_path / "d", per_split={"train": 16, "val": 1}, size=20)  # 48 train images
    for name in ("bad1.png", "bad2.png"):
        (root / "train" / "cat" / name).write_bytes(b"not an image")
    cfg = load_config(
        None,
        [
            "epochs=auto",
            "batch_size=16",
            "data.keep_last_batch=true",
            "data.img_size=16",
            "model.name=test_resnet",
            "data.skip_bad_images=true",
            "data.num_workers=0",
        ],
        {"data": {"name": str(root)}},
    )
    run = prepare_run(cfg, tmp_path / "run")
    # 48 readable images: 3 steps of 16 -> 800 epochs (50 files would have made 4 steps -> 600)
    assert len(run.loaders["train"]) == 3 and run.cfg.epochs == 800
