"""Speed switches resolved from the hardware, and results that do not depend on them."""

import json

import pytest
import torch
from safetensors.torch import load_file

import scarce.engine.hardware as hw
import scarce.engine.speed_probe as sp
from scarce.config import load_config
from scarce.engine.evaluation import load_run
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
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert hw.resolve_workers("auto", threads=8, in_memory=True) == 0
    assert hw.resolve_workers("auto", threads=8, in_memory=False) == 1
    assert hw.resolve_workers("auto", threads=4, in_memory=False) == 4
    assert hw.resolve_workers(3, threads=8, in_memory=True) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun on CPUs: each process has 4 cores, 2 of them threads
    assert hw.resolve_workers("auto", threads=2, in_memory=False) == 2
    # a GPU leaves the cores to augmentation, in memory too: this process's share less one
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert hw.resolve_workers("auto", threads=8, in_memory=True, device_type="cuda") == 7
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: 4 processes share the 8 cores
    assert hw.resolve_workers("auto", threads=2, in_memory=False, device_type="cuda") == 1
    assert hw.resolve_workers(0, threads=2, in_memory=False, device_type="cuda") == 0


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


def test_fastest_setting_must_beat_plain_fp32_by_the_margin():
    plain = ("none", False)
    assert sp.pick_fastest({plain: 1.0, ("none", True): 0.95, ("bf16", False): 0.5}) == ("bf16", False)
    assert sp.pick_fastest({plain: 1.0, ("none", True): 0.95}) == plain  # 5 %: noise, keep exact fp32
    assert sp.pick_fastest({plain: 1.0, ("bf16", True): 0.8}) == ("bf16", True)
    assert sp.pick_fastest({("bf16", False): 1.0, ("bf16", True): 2.0}) == ("bf16", False)
    # two settings within noise of each other (timed 0.245 / 0.268 and 0.26 / 0.245 s on a loaded
    # CPU): the earlier one either way, so the same command does not train in another memory format
    for bf16, bf16_cl in ((0.245, 0.268), (0.26, 0.245)):
        timed = {plain: 0.4, ("none", True): 0.38, ("bf16", False): bf16, ("bf16", True): bf16_cl}
        assert sp.pick_fastest(timed) == ("bf16", False)
    assert sp.pick_fastest({**timed, ("bf16", True): 0.2}) == ("bf16", True)  # clearly faster: taken
    # a setting only 5 % faster than plain is never taken, even when it comes before a faster one
    assert sp.pick_fastest({plain: 1.0, ("none", True): 0.95, ("bf16", False): 0.87}) == ("bf16", False)


def test_probe_times_every_candidate_and_draws_nothing_from_the_run_rng():
    import timm

    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    amp, last, seconds = sp.probe_settings(
        lambda: timm.create_model("test_resnet", num_classes=3, in_chans=1), (4, 1, 16, 16), ["none"], [False, True]
    )
    assert torch.equal(torch.rand(4), expected)
    assert set(seconds) == {"none", "none channels_last"} and all(s > 0 for s in seconds.values())
    assert (amp, last) in {("none", False), ("none", True)}


@pytest.mark.parametrize("loss", ["focal_cosine", "cosine_ce"])
def test_probe_times_a_model_with_head_g(tmp_path, loss):
    # these losses add head g, whose model returns a dict of logits: the probe once crashed on it
    from scarce.cli import main

    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--no-progress", *TINY, "epochs=1", f"loss.name={loss}"]
    assert main([*argv, "amp=auto", "channels_last=auto"]) == 0
    probe = json.loads((out / "environment.json").read_text())["hardware"]["probe"]
    assert {"none", "none channels_last"} <= set(probe)


def test_cpu_settings_probe_only_auto_switches_once_per_model(monkeypatch):
    calls = []
    monkeypatch.setattr(sp, "_chosen", {})
    monkeypatch.setattr(
        sp, "probe_settings", lambda make, shape, amps, lasts: calls.append((shape, amps, lasts)) or ("bf16", True, {})
    )
    never = lambda: pytest.fail("a fixed setting was timed")  # noqa: E731
    assert sp.choose_cpu_settings("none", False, True, never, (64, 3, 32, 32), key="m") == ("none", False, None)
    assert sp.choose_cpu_settings("bf16", "auto", False, None, (64, 3, 32, 32), key="m") == ("bf16", True, {})
    assert calls == [((32, 3, 32, 32), ["bf16"], [False, True])]  # batch capped at PROBE_MAX_BATCH
    sp.choose_cpu_settings("auto", "auto", True, None, (8, 3, 32, 32), key="m")
    sp.choose_cpu_settings("auto", "auto", True, None, (8, 3, 32, 32), key="m")
    assert calls[1:] == [((8, 3, 32, 32), ["none", "bf16"], [False, True])]  # bf16 timed only where native
    sp.choose_cpu_settings("auto", "auto", False, None, (8, 3, 32, 32), key="m")
    assert calls[2:] == [((8, 3, 32, 32), ["none"], [False, True])]


def test_run_trains_with_the_probed_settings_and_a_resume_keeps_them(tmp_path, image_folder, monkeypatch):
    from scarce.engine.prepare import cpu_speed_chooser, prepare_run

    monkeypatch.setattr(sp, "_chosen", {})
    monkeypatch.setattr(hw, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))  # the fixed rule: bf16
    monkeypatch.setattr(sp, "probe_settings", lambda *a: ("none", True, {"none": 0.2, "none channels_last": 0.1}))
    overrides = [o for o in TINY if not o.startswith(("amp=", "channels_last="))] + ["amp=auto", "channels_last=auto"]
    cfg = load_config(None, overrides, {"data": {"name": str(image_folder)}})
    run = prepare_run(cfg, tmp_path / "run")
    assert (run.hardware.amp, run.hardware.channels_last) == ("none", True)
    assert next(run.model.parameters()).is_contiguous(memory_format=torch.channels_last)
    assert run.step.amp == "none" and "timed s/step: none 0.2, none channels_last 0.1" in run.hardware.describe()
    train(cfg, tmp_path / "run", progress=False)
    loaded = load_run(tmp_path / "run", "cpu")
    assert (loaded.amp, loaded.channels_last) == ("none", True)  # scored as it trained, not by the fixed rule
    monkeypatch.setattr(sp, "probe_settings", lambda *a: pytest.fail("a resumed run timed again"))
    choose = cpu_speed_chooser(cfg, run.data, tmp_path / "run")
    assert choose(True) == ("none", True, None)
    env = tmp_path / "run" / "environment.json"
    env.write_text(env.read_text().replace('"amp": "none"', '"amp": "bf16"'))
    assert cpu_speed_chooser(cfg, run.data, tmp_path / "run")(True) == ("bf16", True, None)
    monkeypatch.setattr(sp, "probe_settings", lambda *a: ("none", False, {}))  # moved to a CPU without bf16:
    assert cpu_speed_chooser(cfg, run.data, tmp_path / "run")(False) == ("none", False, {})  # timed again
    deterministic = load_config(None, overrides + ["deterministic=true"], {"data": {"name": str(image_folder)}})
    fixed = hw.resolve_hardware(deterministic, CPU, True, choose_cpu_speed=pytest.fail)  # no timed choice
    assert (fixed.amp, fixed.channels_last, fixed.probe) == (
        hw.resolve_amp("auto", CPU),
        hw.resolve_channels_last("auto", CPU),
        None,
    )


def test_scoring_repeats_a_cpu_runs_choice_only_where_this_cpu_can(tmp_path, monkeypatch):
    import json

    (tmp_path / "environment.json").write_text(
        json.dumps({"hardware": {"device": "cpu", "amp": "bf16", "channels_last": False}})
    )
    monkeypatch.setattr(hw, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert hw.scoring_speed("auto", "auto", tmp_path, CPU) == ("bf16", False)
    assert hw.scoring_speed("none", True, tmp_path, CPU) == ("none", True)  # set in the config: kept
    monkeypatch.setattr(hw, "cpu_flags", lambda: frozenset({"avx2"}))  # bf16 would be emulated here
    assert hw.scoring_speed("auto", "auto", tmp_path, CPU) == ("none", False)
    assert hw.scoring_speed("auto", "auto", tmp_path / "no-record", CPU) == ("none", False)
