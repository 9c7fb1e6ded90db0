"""Speed switches resolved from the hardware, and results that do not depend on them."""

import pytest
import torch
from safetensors.torch import load_file

import scarce.engine.hardware as hw
from scarce.config import load_config
from scarce.engine.trainer import train
from scarce.errors import UserError
from tests.conftest import TINY

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "flags, amp, channels_last",
    [
        (frozenset({"avx2", "fma"}), "none", False),  # AVX2 only: bf16 autocast is emulated, slow
        (frozenset({"avx512f", "avx512_bf16"}), "bf16", True),
        (frozenset({"amx_bf16", "amx_tile"}), "bf16", True),
    ],
)
def test_auto_turns_bf16_on_only_where_native(monkeypatch, flags, amp, channels_last):
    monkeypatch.setattr(hw, "cpu_flags", lambda: flags)
    assert hw.resolve_amp("auto", CPU) == amp
    assert hw.resolve_channels_last("auto", CPU) is channels_last
    assert hw.resolve_amp("fp16", CPU) == "fp16" and hw.resolve_channels_last(False, CPU) is False


def test_workers_auto(monkeypatch):
    monkeypatch.setattr(hw, "available_cores", lambda: 8)
    assert hw.resolve_workers("auto", threads=8, in_memory=True) == 0
    assert hw.resolve_workers("auto", threads=8, in_memory=False) == 1
    assert hw.resolve_workers("auto", threads=4, in_memory=False) == 4
    assert hw.resolve_workers(3, threads=8, in_memory=True) == 3


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=nan", "optim.lr"),
        ("optim.lr=-1", "optim.lr"),
        ("data.img_size=0", "data.img_size"),
        ("data.crop_pct=0", "data.crop_pct"),
        ("eval_every=0", "eval_every"),
        ("model.drop_rate=1.5", "model.drop_rate"),
        ("data.num_workers=-1", "data.num_workers"),
        ("clip_grad=-1", "clip_grad"),
        ("ema.decay=2", "ema.decay"),
        ("data.img_size=100000", "data.img_size"),
        ("augment.scale=[2,1]", "augment.scale"),
        ("threads=0", "threads"),
        ("amp=fp8", "amp"),
    ],
)
def test_out_of_range_values_fail_when_the_config_is_read(override, message):
    with pytest.raises(UserError, match=f"config key '{message}'"):
        load_config(None, [override])


def test_scale_must_be_ordered(tmp_path):
    cfg = load_config(None, TINY + ["augment.scale=[0.9, 0.5]"])
    with pytest.raises(UserError, match="low <= high"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # nothing written


def test_number_of_workers_changes_no_result(tmp_path, image_folder, one_thread):
    runs = {}
    for workers in (0, 2):
        cfg = load_config(
            None,
            TINY
            + [
                "deterministic=true",
                f"data.num_workers={workers}",
                "augment.randaugment=rand-m9-mstd0.5",
                "augment.hflip=0.5",
            ],
            {"data": {"name": str(image_folder)}},
        )
        train(cfg, tmp_path / f"w{workers}", progress=False)
        runs[workers] = load_file(str(tmp_path / f"w{workers}" / "last.safetensors"))
    assert all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])
