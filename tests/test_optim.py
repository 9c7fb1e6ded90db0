"""Optimizers: their state through a checkpoint, and the settings that reach them."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

import scarce.engine.factories as factories
from scarce.cli import main
from scarce.config import load_config
from scarce.engine.checkpoint import load_checkpoint, save_checkpoint
from scarce.engine.trainer import train
from scarce.errors import UserError
from tests.conftest import TINY


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 3))


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    optimizer.zero_grad()
    model(torch.randn(4, 6, generator=gen)).square().mean().backward()
    optimizer.step()


def _plain(value):
    """A group or state value comparable after a round trip (JSON keeps tuples as lists)."""
    if torch.is_tensor(value):
        return (value.dtype, value.device, value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _comparable(state_dict: dict) -> dict:
    return {
        "groups": [{k: _plain(v) for k, v in g.items()} for g in state_dict["param_groups"]],
        "state": {pid: {k: _plain(v) for k, v in s.items()} for pid, s in state_dict["state"].items()},
    }


# torch's (adamw, sgd) and timm's with a tensor (lamb), a dtype (adafactorbv) in their groups
@pytest.mark.parametrize("name", ["adamw", "sgd", "lamb", "adafactorbv"])
def test_optimizer_state_round_trips_through_a_checkpoint(name, tmp_path):
    cfg = load_config(None, TINY + [f"optim.name={name}", "optim.decay_norm_and_bias=false"])
    model = _model()
    optimizer = factories.build_optimizer(cfg, model)
    _step(model, optimizer, 1)
    _step(model, optimizer, 2)
    save_checkpoint(tmp_path, 0, model, optimizer, extra={"global_step": 2, "best": {}})
    again = _model()
    again.load_state_dict(model.state_dict())
    restored = factories.build_optimizer(cfg, again)
    load_checkpoint(tmp_path, again, restored)
    assert _comparable(restored.state_dict()) == _comparable(optimizer.state_dict())
    _step(model, optimizer, 3)  # and the next step is the same
    _step(again, restored, 3)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))


def test_kron_lists_of_preconditioners_round_trip(tmp_path):
    cfg = load_config(None, TINY + ["optim.name=kron", "optim.decay_norm_and_bias=false"])
    model = _model()
    optimizer = factories.build_optimizer(cfg, model)
    _step(model, optimizer, 1)
    assert any(isinstance(s.get("Q"), list) for s in optimizer.state_dict()["state"].values())
    save_checkpoint(tmp_path, 0, model, optimizer, extra={"global_step": 1, "best": {}})
    restored = factories.build_optimizer(cfg, _model())
    load_checkpoint(tmp_path, _model(), restored)
    assert _comparable(restored.state_dict()) == _comparable(optimizer.state_dict())


def test_an_optimizer_setting_a_checkpoint_cannot_record_is_refused_when_built(monkeypatch):
    import timm.optim

    real = timm.optim.create_optimizer_v2

    def with_odd_setting(*args, **kwargs):
        optimizer = real(*args, **kwargs)
        optimizer.param_groups[0]["schedule"] = object()  # as a custom optimizer's callable setting
        return optimizer

    monkeypatch.setattr(timm.optim, "create_optimizer_v2", with_odd_setting)
    with pytest.raises(UserError, match=r"^optim.name 'sgd': its setting schedule \(object\) cannot be written"):
        factories.build_optimizer(load_config(None, TINY + ["optim.name=sgd"]), _model())


def test_a_lamb_run_checkpoints_and_resumes_as_if_uninterrupted(tmp_path):
    extra = ["epochs=2", "deterministic=true", "optim.name=lamb"]
    full = tmp_path / "full"
    train(load_config(None, TINY + extra), full, progress=False)
    part = tmp_path / "part"
    assert train(load_config(None, TINY + extra), part, progress=False, stop_after=1) == {}
    assert main(["train", "--resume", str(part), "--no-progress"]) == 0
    a, b = load_file(str(full / "last.safetensors")), load_file(str(part / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_keeps_the_optimizer_and_its_parameter_groups(tmp_path, capsys):
    run = tmp_path / "run"  # two groups: norm weights and biases apart, without decay
    extra = ["epochs=2", "optim.name=adamw", "optim.decay_norm_and_bias=false", "optim.weight_decay=0.05"]
    train(load_config(None, TINY + extra), run, progress=False, stop_after=1)
    for override, message in (
        ("optim.name=sgd", "optim.name='sgd' differs from the run's 'adamw'; a resumed run keeps its model, data, "),
        ("optim.decay_norm_and_bias=true", "optim.decay_norm_and_bias=True differs from the run's False"),
        ("optim.weight_decay=0", "optim.weight_decay=0.0 differs from the run's 0.05; with optim.decay_norm_and_bias"),
    ):
        assert main(["train", "--resume", str(run), override, "--no-progress"]) == 2, override
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    state = json.loads((run / "state.json").read_text())
    groups = state["optimizer"]["param_groups"]  # as if saved by a timm that grouped otherwise
    state["optimizer"]["param_groups"] = [{**groups[0], "params": groups[0]["params"] + groups[1]["params"]}]
    (run / "state.json").write_text(json.dumps(state))
    sizes = [len(g["params"]) for g in groups]
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (
        f"the checkpoint's optimizer state does not fit this run's optimizer (parameter groups of [{sum(sizes)}] "
        in err
    )
    assert f"in the checkpoint, {sizes} in this run's optimizer)" in err and len(err.strip().splitlines()) == 1


def test_resume_may_change_the_weight_decay_where_the_groups_stay(tmp_path, capsys):
    # between two non-zero values always; to 0 too where every parameter decays (one group either way)
    for name, extra, change in (
        ("split", ["optim.decay_norm_and_bias=false"], "optim.weight_decay=0.01"),
        ("whole", ["optim.decay_norm_and_bias=true"], "optim.weight_decay=0"),
    ):
        run = tmp_path / name
        train(
            load_config(None, TINY + ["epochs=2", "optim.weight_decay=0.05", *extra]), run, progress=False, stop_after=1
        )
        assert main(["train", "--resume", str(run), change, "--no-progress"]) == 0, name
        assert f"optim.weight_decay 0.05 -> {float(change.split('=')[1])}" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["sgd", "sgdw", "nesterovw", "lars"])
def test_optim_momentum_reaches_every_optimizer_that_has_one(name):
    optimizer = factories.build_optimizer(
        load_config(None, TINY + [f"optim.name={name}", "optim.momentum=0.5"]), _model()
    )
    assert [g["momentum"] for g in optimizer.param_groups] == [0.5, 0.5]


def test_optim_momentum_does_not_reach_an_optimizer_without_one():
    optimizer = factories.build_optimizer(
        load_config(None, TINY + ["optim.name=adamw", "optim.momentum=0.5"]), _model()
    )
    assert all("momentum" not in g for g in optimizer.param_groups)


def test_a_second_order_optimizer_gets_the_graph_of_its_gradients():
    # timm's adahessian differentiates the gradients again: without create_graph it fails on step 1
    from scarce.engine.loop import TrainStep

    model = _model()
    optimizer = factories.build_optimizer(load_config(None, TINY + ["optim.name=adahessian", "optim.lr=0.1"]), model)
    before = [p.detach().clone() for p in model.parameters()]
    gen = torch.Generator().manual_seed(0)
    x, target = torch.randn(4, 6, generator=gen), torch.tensor([0, 1, 2, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's create_graph cycle warning is handled, not shown
        loss = TrainStep(model, nn.functional.cross_entropy, optimizer)(x, target, global_step=0)
    assert torch.isfinite(loss)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
