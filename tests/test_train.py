import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import yaml
from safetensors.torch import load_file

from scarce.cli import main
from scarce.config import load_config
from scarce.engine.evaluation import evaluate_run
from scarce.engine.trainer import train
from scarce.errors import UserError
from tests.conftest import TINY


def _train(tmp_path, *extra, name="run", data="demo"):
    cfg = load_config(None, TINY + list(extra), {"data": {"name": data}})
    summary = train(cfg, tmp_path / name, progress=False)
    return tmp_path / name, summary


def test_smoke_run_writes_run_directory(tmp_path):
    run_dir, summary = _train(tmp_path, "ema.enabled=true", "ema.decay=0.9")
    for name in (
        "config.yaml",
        "classes.json",
        "metrics.jsonl",
        "best.safetensors",
        "last.safetensors",
        "last_ema.safetensors",
        "summary.json",
        "test_metrics.json",
        "environment.json",
    ):
        assert (run_dir / name).is_file(), name
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all({"train_loss", "val_top1", "val_top1_ema", "lr", "seconds"} <= set(r) for r in rows)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["name"] == "test_resnet" and saved["ema"]["enabled"] is True
    assert summary["test"]["count"] == 1000 and 0.0 <= summary["test"]["top1"] <= 1.0
    assert summary["best"]["weights"] in ("model", "ema")


def test_weights_load_in_plain_timm(tmp_path):
    run_dir, _ = _train(tmp_path, "epochs=1")
    model = timm.create_model(
        "test_resnet",
        pretrained=True,
        num_classes=10,
        in_chans=1,
        pretrained_cfg_overlay=dict(file=str(run_dir / "best.safetensors"), num_classes=10),
    )
    saved = load_file(str(run_dir / "best.safetensors"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


def test_ema_is_evaluated_and_differs_from_model(tmp_path):
    # decay 0.9, no precise BN: the EMA of so short a run then scores apart from the raw model
    run_dir, _ = _train(tmp_path, "ema.enabled=true", "ema.decay=0.9", "ema.warmup=false", "model.precise_bn=false")
    raw = load_file(str(run_dir / "last.safetensors"))
    ema = load_file(str(run_dir / "last_ema.safetensors"))
    assert any(not torch.equal(raw[k], ema[k]) for k in raw if raw[k].is_floating_point())
    last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["val_top1_ema"] != last["val_top1"]  # else the check below could not tell them apart
    for weights, key in (("last_ema", "val_top1_ema"), ("last", "val_top1")):  # each scored with its own weights
        scored = evaluate_run(run_dir / f"{weights}.safetensors", None, "val", tmp_path / "v.json", num_workers=0)
        assert scored["top1"] == pytest.approx(last[key], abs=1e-9), weights


def test_training_learns_on_separable_folder(tmp_path, image_folder):
    run_dir, summary = _train(tmp_path, "epochs=8", "data.img_size=16", "optim.lr=0.005", data=str(image_folder))
    assert summary["test"]["top1"] >= 0.9  # class means are 80 grey levels apart


def test_resume_equals_uninterrupted(tmp_path, image_folder):
    # 24 images, batch 4: 6 steps per epoch, every augmentation stream and EMA update exercised
    extra = [
        "epochs=3",
        "deterministic=true",
        "ema.enabled=true",
        "ema.decay=0.9",
        "augment.randaugment=rand-m9-mstd0.5",
        "augment.mix.mixup_alpha=0.8",
        "augment.mix.cutmix_alpha=1.0",
        "batch_size=4",
    ]
    full, _ = _train(tmp_path, *extra, name="full", data=str(image_folder))
    cfg = load_config(None, TINY + extra, {"data": {"name": str(image_folder)}})
    assert train(cfg, tmp_path / "part", progress=False, stop_after=2) == {}
    assert not (tmp_path / "part" / "summary.json").exists()
    assert main(["train", "--resume", str(tmp_path / "part"), "--no-progress"]) == 0
    for name in ("last.safetensors", "last_ema.safetensors"):
        a, b = load_file(str(full / name)), load_file(str(tmp_path / "part" / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    rows = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [0, 1, 2]


def test_evaluate_writes_json(tmp_path):
    run_dir, _ = _train(tmp_path, "epochs=1")
    result = evaluate_run(run_dir, None, "val", tmp_path / "eval.json", num_workers=0)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["count"] == 100 and set(saved["per_class"]) == set(result["per_class"])
    assert 0 <= saved["top1"] <= saved["top5"] <= 1


def test_cli_train_and_evaluate(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", "--recipe", "demo", "--out", str(out), "--no-progress", *TINY, "epochs=1"]) == 0
    assert "run directory:" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--split", "val", "--workers", "0"]) == 0
    assert '"count": 100' in capsys.readouterr().out
    assert main(["train", "--recipe", "demo", "--out", str(out), *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["model.name=resnet19"], "model.name 'resnet19': not a timm model; close matches: resnet18"),
        (["optim.name=adamww"], "optim.name 'adamww': unknown; close matches: adamw"),
        (
            ["loss.name=cosinee"],
            "config key 'loss.name': expected one of ce, label_smoothing, cosine, cosine_ce, "
            "focal, focal_cosine, focal_cosine_authors, got 'cosinee' (close: cosine, cosine_ce",
        ),
        (
            ["sched.name=cosin"],
            "config key 'sched.name': expected one of cosine, tanh, step, multistep, poly, constant, "
            "got 'cosin' (close: cosine)",
        ),
        (["optim.lrr=1"], "unknown config key 'optim.lrr'"),
        (["batch_size=1"], "batch_size=1: the model has BatchNorm layers, which need at least 2 images a batch"),
        (["--data", "/no/such/folder"], "not a built-in dataset"),
        (["--data", "fashion-mnis"], "nor a folder with a train/ subfolder (close: fashion-mnist)"),
        (["--recipe", "nope"], "built-in recipes:"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, args, message):
    assert main(["train", "--out", str(tmp_path / "x"), *TINY, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_cli_is_installed_console_script(tmp_path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "scarce"), "train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    assert "optim.lr" in result.stdout and "augment.lsb_swap.bits" in result.stdout


def test_best_changes_only_on_evaluated_epochs(tmp_path):
    run_dir, summary = _train(tmp_path, "epochs=3", "eval_every=2")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert ["val_top1" in r for r in rows] == [False, True, True]
    assert summary["best"]["epoch"] in (1, 2) and summary["best"]["top1"] >= 0
    from safetensors import safe_open

    with safe_open(str(run_dir / "best.safetensors"), "pt") as fh:
        assert int(fh.metadata()["epoch"]) == summary["best"]["epoch"]


def test_folder_without_val_gets_a_stratified_val_split(tmp_path, capsys):
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "d", per_split={"train": 10, "test": 4})
    run_dir, summary = _train(tmp_path, "epochs=1", "data.val_fraction=0.2", "augment.fill=17", data=str(root))
    assert "no val/ folder: 6 train images" in capsys.readouterr().out
    info = json.loads((run_dir / "classes.json").read_text())
    assert info["split_sizes"] == {"train": 24, "val": 6, "test": 12}
    from scarce.engine.evaluation import load_run

    assert info["fill"] == [17] * info["in_chans"] == load_run(run_dir, "cpu").augment_fill  # TTA repeats it
    del info["fill"]  # a run from before augment.fill: RandAugment painted the normalisation mean
    (run_dir / "classes.json").write_text(json.dumps(info))
    assert load_run(run_dir, "cpu").augment_fill == [round(255 * m) for m in info["mean"]]
    assert sorted({p.split("/")[0] for p in info["val_from_train"]}) == ["cat", "dog", "emu"]  # 2 per class
    assert summary["best"]["top1"] >= 0 and "calibration" in summary
    again = evaluate_run(run_dir, None, "val", tmp_path / "v.json", num_workers=0)  # the same split again
    assert again["count"] == 6


def test_a_plain_class_folder_as_data_is_its_own_train_split(tmp_path, capsys):
    """``--data FOLDER`` of <class>/<image> (no train/) trains as ``--train FOLDER``, from the CLI
    and the API alike, where it had been refused with a hint; val comes from it, and there is no test."""
    import scarce
    from tests.conftest import make_image_folder

    plain = make_image_folder(tmp_path / "d", per_split={"photos": 10}) / "photos"
    argv = ["train", "--data", str(plain), "--out", str(tmp_path / "cli"), "--no-progress", *TINY, "epochs=1"]
    assert main(argv) == 0
    assert "no val/ folder: 3 train images" in capsys.readouterr().out
    saved = yaml.safe_load((tmp_path / "cli" / "config.yaml").read_text())["data"]
    assert (saved["name"], saved["train"], saved["test"]) == (str(plain), str(plain), None)
    info = json.loads((tmp_path / "cli" / "classes.json").read_text())
    assert info["classes"] == ["cat", "dog", "emu"] and info["split_sizes"] == {"train": 27, "val": 3}
    settings = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in TINY)}
    api = scarce.train(data=plain, out=tmp_path / "api", **{**settings, "epochs": 1})
    assert yaml.safe_load((api.path / "config.yaml").read_text())["data"] == saved
    # the folder is train's: evaluate's default test split is refused, not read from the train images
    assert main(["evaluate", str(tmp_path / "cli"), "--out", str(tmp_path / "e.json")]) == 2
    assert "has no test split (found: train" in capsys.readouterr().err
    # with a train folder given, data stays the root whose val/ and test/ fill in the other splits
    root = make_image_folder(tmp_path / "r", per_split={"val": 2, "test": 2})
    beside = scarce.train(data=root, out=tmp_path / "beside", **{**settings, "epochs": 1, "data.train": str(plain)})
    assert json.loads((beside.path / "classes.json").read_text())["split_sizes"] == {"train": 30, "val": 6, "test": 6}


def test_a_changed_train_folder_cannot_redraw_a_runs_val_split(tmp_path, capsys):
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "d", per_split={"train": 10, "test": 4})
    cfg = load_config(None, [*TINY, "epochs=2", "data.val_fraction=0.2"], {"data": {"name": str(root)}})
    assert train(cfg, tmp_path / "run", progress=False, stop_after=1) == {}
    recorded = (tmp_path / "run" / "classes.json").read_text()
    first_val = json.loads(recorded)["val_from_train"][0]
    shutil.move(root / "train" / first_val, tmp_path / "aside.png")  # a val image gone: the draw changes
    with pytest.raises(UserError, match="the train folder changed since the run took its val split from it"):
        evaluate_run(tmp_path / "run", None, "val", tmp_path / "v.json", num_workers=0)
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "val images differ from classes.json's val_from_train" in capsys.readouterr().err
    assert (tmp_path / "run" / "classes.json").read_text() == recorded  # the record is not overwritten
    other = make_image_folder(tmp_path / "other", per_split={"train": 10}, seed=1)  # another dataset's val: no record
    from scarce.config import DataConfig

    scored = evaluate_run(tmp_path / "run", DataConfig(name=str(other)), "val", tmp_path / "o.json", num_workers=0)
    assert scored["count"] == 3  # drawn from its own train folder (val_fraction 0.1 of 10 per class)
    shutil.move(tmp_path / "aside.png", root / "train" / first_val)
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 0


def test_patience_stops_early_and_scores_the_best(tmp_path, capsys):
    # lr small enough that val top-1 stays put (so patience runs out) but large enough that the
    # weights move: the best epoch's file then differs from the last one's and the scored one shows
    run_dir, summary = _train(tmp_path, "epochs=8", "patience=1", "optim.lr=1e-6", "sched.name=constant")
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) < 8 and summary["stopped_early"].startswith("early stop after epoch")
    assert "early stop after epoch" in capsys.readouterr().out
    best, last = (load_file(run_dir / f"{n}.safetensors") for n in ("best", "last"))
    assert summary["best"]["epoch"] < json.loads(rows[-1])["epoch"]
    assert any(not torch.equal(best[k], last[k]) for k in best)
    scored = json.loads((run_dir / "test_metrics.json").read_text())
    again = evaluate_run(run_dir / "best.safetensors", None, "test", tmp_path / "e.json", num_workers=0)
    assert summary["test"]["count"] == 1000 and scored["weights"].endswith("best.safetensors")
    assert scored["top1"] == again["top1"] and scored["macro_f1"] == pytest.approx(again["macro_f1"])
    # patience running out on the last epoch is no early stop: the run trained every epoch
    _, summary = _train(tmp_path, "epochs=2", "patience=1", "optim.lr=1e-6", "sched.name=constant", name="all")
    assert summary["stopped_early"] is None and "early stop" not in capsys.readouterr().out


def test_a_batch_larger_than_the_train_set_is_stated(tmp_path, image_folder, capsys):
    cfg = load_config(None, [*TINY, "epochs=1", "batch_size=64"], {"data": {"name": str(image_folder)}})
    train(cfg, tmp_path / "run", progress=True)
    out = capsys.readouterr().out
    assert "1 epoch x 1 step = 1 step (batch_size 64 > 24 train images: one step of all of them)" in out, out


def test_precise_bn_passes_over_a_last_batch_of_one_image():
    from scarce.engine.loop import recompute_bn_stats

    # a 1x1 map: a batch of one image has one value per channel, which train-mode BatchNorm refuses
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1, bias=False), torch.nn.BatchNorm2d(2))
    torch.nn.init.ones_(model[0].weight)
    batches = [(torch.tensor([1.0, 3.0]).view(2, 1, 1, 1), None), (torch.full((1, 1, 1, 1), 50.0), None)]
    recompute_bn_stats(model, batches, lambda x, train: x)
    assert model[1].running_mean.tolist() == [2.0, 2.0]  # the pair's mean; the single image left out


def test_each_epoch_line_but_the_last_says_how_long_the_rest_takes(tmp_path, capsys):
    from scarce.errors import duration_text

    assert [duration_text(s) for s in (0.4, 59.6, 185, 7620, -3)] == ["0s", "1m00s", "3m05s", "2h07m", "0s"]
    _train(tmp_path, "epochs=3")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch=")]
    assert len(lines) == 3 and all(" eta=" in line for line in lines[:2]) and " eta=" not in lines[2]
    assert all("eta" not in json.loads(row) for row in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())


def test_dropout_is_seeded_apart_from_every_images_augmentation(tmp_path, monkeypatch):
    """The step's global RNG (dropout, drop path, random erasing) had rank r's seed equal to train
    image r's per-sample augmentation seed, so the two replayed the same draws."""
    import scarce.engine.trainer as trainer
    from scarce.data.seeding import sample_seed

    seeds = []
    monkeypatch.setattr(trainer, "seed_everything", seeds.append)
    _train(tmp_path, "epochs=2")
    per_sample = {sample_seed(0, epoch, index) for epoch in (0, 1) for index in range(500)}  # the demo's train
    assert len(seeds) == 2 and not per_sample & set(seeds)


def test_precise_bn_recomputes_the_ema_statistics_too(tmp_path, monkeypatch):
    """The EMA's buffers average the raw model's lagging statistics: with precise BN they must be
    the EMA weights' own, as for the raw model (else the EMA is scored and saved far off)."""
    import scarce.engine.trainer as trainer
    from scarce.engine.evaluation import load_run
    from scarce.engine.loop import recompute_bn_stats

    passes = []
    monkeypatch.setattr(trainer, "recompute_bn_stats", lambda *args: (passes.append(args), recompute_bn_stats(*args)))
    run_dir, _ = _train(tmp_path, "model.precise_bn=true", "ema.enabled=true", "ema.decay=0.9", "ema.warmup=false")
    _, loader, preprocess = passes[-1]
    saved = load_file(str(run_dir / "last_ema.safetensors"))
    ema = load_run(run_dir / "last_ema.safetensors", "cpu").model
    recompute_bn_stats(ema, loader, preprocess)
    means = [k for k in saved if k.endswith("running_mean")]
    assert means and all(torch.allclose(ema.state_dict()[k], saved[k], atol=1e-6) for k in means)
    assert len(passes) == 4  # the raw model and the EMA, at each of the 2 epochs
