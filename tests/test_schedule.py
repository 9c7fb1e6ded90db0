"""Per-step learning-rate schedules: any run length trains, resume and extension follow the config."""

import json

import pytest
import torch
from safetensors.torch import load_file

from scarce.cli import main
from scarce.config import load_config
from scarce.engine.factories import build_scheduler, schedule_steps
from scarce.engine.prepare import prepare_run
from scarce.engine.trainer import train
from tests.conftest import TINY


def _lrs(overrides: list[str], updates_per_epoch: int) -> list[float]:
    """The lr each optimizer update of a run uses, in order."""
    cfg = load_config(None, overrides)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optim.lr)
    scheduler = build_scheduler(cfg, optimizer, updates_per_epoch)
    total, _ = schedule_steps(cfg, updates_per_epoch)
    lrs = []
    for step in range(total):
        scheduler.step_update(num_updates=step)
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_per_step_lr_reaches_peak_within_warmup_then_decays():
    lrs = _lrs(
        ["epochs=10", "optim.lr=0.05", "sched.warmup_epochs=1.5", "sched.warmup_lr=0.001", "sched.min_lr=0.0001"],
        updates_per_epoch=8,
    )
    warmup = 12  # 1.5 epochs x 8 updates
    assert lrs[0] == pytest.approx(0.001)
    assert all(a < b for a, b in zip(lrs[:warmup], lrs[1 : warmup + 1]))  # rises every step
    assert lrs[warmup] == pytest.approx(0.05)  # reaches optim.lr
    assert max(lrs) == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1 :]))  # then only decays
    assert lrs[-1] < 0.0015 and lrs[-1] >= 0.0001


def test_multistep_milestones_are_epochs_of_the_run_whatever_the_warmup():
    # timm counts milestones after a prefix warmup: [3, 6] with 2 warmup epochs decayed at 5 and 8
    lrs = _lrs(
        ["epochs=10", "optim.lr=1.0", "sched.name=multistep", "sched.warmup_epochs=2", "sched.warmup_lr=0.0"]
        + ["sched.decay_milestones=[3, 6]", "sched.decay_rate=0.1"],
        updates_per_epoch=10,
    )
    # each epoch's first step
    assert lrs[::10] == pytest.approx([0.0, 0.5, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01])
    # and on the step: timm's own multistep decays one update before its milestone
    assert (lrs[29], lrs[30], lrs[59], lrs[60]) == pytest.approx((1.0, 0.1, 0.1, 0.01))


def test_constant_holds_the_peak_after_warmup_in_any_timm_version():
    # built as a step schedule that never decays: timm before 1.0.31 has no 'constant' and
    # returned no scheduler at all (seen on a GPU machine's timm 1.0.29)
    lrs = _lrs(
        [
            "epochs=4",
            "optim.lr=0.05",
            "sched.name=constant",
            "sched.warmup_epochs=1",
            "sched.warmup_lr=0.001",
            "sched.decay_epochs=0.5",
            "sched.decay_rate=0.1",
        ],
        updates_per_epoch=5,
    )
    assert lrs[0] == pytest.approx(0.001) and lrs[3] < 0.05  # warmup: 4 steps (a fifth of the run)
    assert lrs[4:] == pytest.approx([0.05] * 16)  # decay_* are the step schedule's, not constant's


def test_a_scheduler_timm_cannot_build_is_one_clear_error(monkeypatch):
    import timm.scheduler

    from scarce.errors import UserError

    monkeypatch.setattr(timm.scheduler, "create_scheduler_v2", lambda *a, **k: (None, 0))
    with pytest.raises(UserError, match=r"sched.name 'cosine': timm \S+ builds no such scheduler"):
        _lrs(["epochs=2"], updates_per_epoch=4)


def test_one_epoch_run_with_long_warmup_is_clipped_and_reaches_peak():
    lrs = _lrs(["epochs=1", "optim.lr=0.01", "sched.warmup_epochs=5"], updates_per_epoch=15)
    assert len(lrs) == 15
    assert max(lrs) == pytest.approx(0.01)  # warmup clipped to 3 of the 15 steps
    assert lrs.index(max(lrs)) == 3


def test_one_epoch_run_trains_and_logs_the_lr_used(tmp_path, capsys):
    cfg = load_config(None, TINY + ["epochs=1", "sched.warmup_epochs=2", "optim.lr=0.01", "sched.min_lr=0.0"])
    train(cfg, tmp_path / "run", progress=False)
    assert "clipped to a fifth of the run" in capsys.readouterr().out
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    lrs = _lrs(TINY + ["epochs=1", "sched.warmup_epochs=2", "optim.lr=0.01", "sched.min_lr=0.0"], 31)
    assert row["lr"] == pytest.approx(lrs[-1])  # the last update's lr, not the next one's


def test_resume_follows_the_lr_of_the_config_in_force(tmp_path):
    cfg = load_config(None, TINY + ["epochs=3", "sched.name=constant"])
    train(cfg, tmp_path / "run", progress=False, stop_after=1)
    resumed = load_config(None, TINY + ["epochs=3", "sched.name=constant", "optim.lr=0.002", "optim.weight_decay=0.5"])
    run = prepare_run(resumed, tmp_path / "run", resume=True)
    assert run.global_step > 0
    assert {g["lr"] for g in run.optimizer.param_groups} == {0.002}
    assert {g["weight_decay"] for g in run.optimizer.param_groups} == {0.5, 0.0}  # timm: no decay on norms/biases


def test_extending_a_finished_run_equals_training_that_long_from_the_start(tmp_path, image_folder):
    # A schedule whose lr at step t does not depend on the run length (step decay after warmup):
    # extending must then give exactly the longer run. 24 images, batch 4: 6 steps per epoch.
    common = TINY + [
        "deterministic=true",
        "sched.name=step",
        "sched.decay_epochs=1",
        "sched.decay_rate=0.5",
        "sched.warmup_epochs=0.5",
        "ema.enabled=true",
        "ema.decay=0.9",
        "batch_size=4",
    ]
    data = {"data": {"name": str(image_folder)}}
    train(
        load_config(None, common + ["epochs=3", "checkpoint.keep_at_end=true"], data),
        tmp_path / "short",
        progress=False,
    )
    assert main(["train", "--resume", str(tmp_path / "short"), "epochs=6", "--no-progress"]) == 0
    train(load_config(None, common + ["epochs=6"], data), tmp_path / "long", progress=False)
    for name in ("last.safetensors", "last_ema.safetensors"):
        a, b = load_file(str(tmp_path / "short" / name)), load_file(str(tmp_path / "long" / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    rows = [
        [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for run in ("short", "long")
    ]
    keys = ("epoch", "train_loss", "val_top1", "val_top1_ema", "lr")
    assert [[r[k] for k in keys] for r in rows[0]] == [[r[k] for k in keys] for r in rows[1]]
    assert len(rows[0]) == 6


def test_demo_recipe_trains_in_one_epoch(tmp_path):
    """15 optimizer steps: the per-step schedule reaches its peak lr, and precise BN (auto in
    short runs) replaces running statistics that lag the fast-changing weights."""
    summary = train(load_config("demo", ["epochs=1"]), tmp_path / "run", progress=False)
    assert summary["test"]["top1"] >= 0.35, summary["test"]
