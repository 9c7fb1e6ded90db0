"""Optimizers: their state through a checkpoint, and the settings that reach them."""

from __future__ import annotations

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
