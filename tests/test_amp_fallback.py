"""amp=auto's bf16 falls back to fp32 when the loss goes non-finite (scarce.engine.amp_fallback).

Real bf16 numerics differ between CPUs (timm's test_resnet diverges in bf16 within its first
epoch on an AVX-512 CPU), so here autocast is replaced by a label: the step computes in fp32,
and the loss is NaN (poisoned) while the step trains under the label bf16, from a chosen epoch
on. The run must train that epoch again from its start in fp32, finish, and record the switch;
with deterministic=true it must then end bit-identical to a run trained in fp32 throughout,
whether the epoch's start came from the initial state, the in-memory snapshot or the checkpoint.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

import scarce.engine.factories as factories
import scarce.engine.hardware as hardware
import scarce.engine.loop as loop
import scarce.engine.trainer as trainer
from scarce.cli import main
from scarce.io import read_jsonl
from tests.conftest import TINY, make_image_folder

ARGS = TINY + ["epochs=3", "deterministic=true", "ema.enabled=true", "ema.decay=0.9"]
WEIGHTS = ("last.safetensors", "last_ema.safetensors", "best.safetensors")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("fallback") / "data", per_split={"train": 16, "val": 4, "test": 4})


def _train(data: Path, out: Path, *extra: str) -> int:
    return main(["train", "--data", str(data), "--out", str(out), "--no-progress", *ARGS, *extra])


@pytest.fixture(scope="module")
def fp32_run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fp32") / "run"
    assert _train(data, out, "checkpoint.every_epochs=1") == 0
    return out


@pytest.fixture
def poison_bf16(monkeypatch):
    """``poison_bf16(from_epoch)``: the CPU counts as having native bf16 (amp=auto resolves to
    bf16 on any machine), autocast becomes a label, and the loss is NaN under the label bf16
    from that epoch on."""
    now = {"epoch": -1, "amp": "none"}
    real_set_epoch, real_build_loss = trainer.set_loader_epoch, factories.build_loss

    def set_epoch(loader, epoch):
        now["epoch"] = epoch
        real_set_epoch(loader, epoch)

    @contextmanager
    def label_only(device, amp):
        now["amp"] = amp
        try:
            yield
        finally:
            now["amp"] = "none"

    def arm(from_epoch: int) -> None:
        class PoisonUnderBf16(nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, outputs, target):
                value = self.inner(outputs, target)
                return value * float("nan") if now["amp"] == "bf16" and now["epoch"] >= from_epoch else value

        monkeypatch.setattr(hardware, "native_bf16", lambda device: True)
        monkeypatch.setattr(loop, "autocast", label_only)
        monkeypatch.setattr(trainer, "set_loader_epoch", set_epoch)
        monkeypatch.setattr(
            factories, "build_loss", lambda cfg, *a, **kw: PoisonUnderBf16(real_build_loss(cfg, *a, **kw))
        )

    return arm


def _same_weights(a: Path, b: Path) -> bool:
    for name in WEIGHTS:
        ta, tb = load_file(str(a / name)), load_file(str(b / name))
        if ta.keys() != tb.keys() or not all(torch.equal(ta[k], tb[k]) for k in ta):
            return False
    return True


def _hardware(run: Path) -> dict:
    return json.loads((run / "environment.json").read_text())["hardware"]


def test_fallback_in_epoch_0_equals_a_run_in_fp32(data, fp32_run, poison_bf16, tmp_path, capsys):
    poison_bf16(from_epoch=0)
    out = tmp_path / "run"
    assert _train(data, out, "amp=auto", "checkpoint.every_epochs=1") == 0
    printed = capsys.readouterr().out
    assert "loss is nan at epoch 0" in printed and "under bf16 autocast (chosen by amp=auto)" in printed, printed
    assert _same_weights(fp32_run, out)
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2]
    assert [r["train_loss"] for r in read_jsonl(out / "metrics.jsonl")] == [
        r["train_loss"] for r in read_jsonl(fp32_run / "metrics.jsonl")
    ]
    recorded = _hardware(out)
    assert recorded["amp"] == "none" and recorded["amp_fallback"]["epoch"] == 0
    assert recorded["amp_fallback"]["from"] == "bf16" and "nan" in recorded["amp_fallback"]["reason"]


@pytest.mark.parametrize("source", ["checkpoint", "snapshot"])
def test_fallback_in_a_later_epoch_restores_its_start(source, data, fp32_run, poison_bf16, tmp_path, capsys):
    poison_bf16(from_epoch=1)
    out = tmp_path / "run"
    # snapshot: no checkpoint before the end, so epoch 0's state is only in memory when epoch 1 fails
    every = (
        ["checkpoint.every_epochs=1"]
        if source == "checkpoint"
        else ["checkpoint.every_epochs=0", "checkpoint.every_seconds=100000"]
    )
    assert _train(data, out, "amp=auto", *every) == 0
    assert "epoch 1 is trained again from its start in fp32" in capsys.readouterr().out
    assert _same_weights(fp32_run, out)
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2]
    assert _hardware(out)["amp"] == "none" and _hardware(out)["amp_fallback"]["epoch"] == 1


def test_bf16_set_by_the_user_still_stops_and_names_amp_none(data, poison_bf16, tmp_path, capsys):
    poison_bf16(from_epoch=1)
    out = tmp_path / "run"
    assert _train(data, out, "amp=bf16", "checkpoint.every_epochs=1") == 3
    err = capsys.readouterr().err.strip()
    assert "loss is nan at epoch 1" in err and "(or amp=none)" in err, err
    assert json.loads((out / "state.json").read_text())["epoch"] == 0  # epoch 0's checkpoint is kept
    assert _hardware(out)["amp"] == "bf16" and _hardware(out)["amp_fallback"] is None


def test_a_resumed_run_stays_in_fp32_and_keeps_the_record(data, poison_bf16, tmp_path, capsys):
    poison_bf16(from_epoch=1)
    out = tmp_path / "run"
    assert _train(data, out, "amp=auto", "checkpoint.every_epochs=1", "checkpoint.keep_at_end=true") == 0
    assert main(["train", "--resume", str(out), "--no-progress", "epochs=4"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("trained again from its start in fp32") == 1, printed  # not again in epoch 3
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2, 3]
    assert _hardware(out)["amp"] == "none" and _hardware(out)["amp_fallback"]["epoch"] == 1
