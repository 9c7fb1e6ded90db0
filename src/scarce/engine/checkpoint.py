"""Training state in safe formats: tensors in safetensors, the rest in JSON.

Layout of a run directory::

    checkpoints/epoch-0007/{model,ema,optimizer}.safetensors   resumable state
    state.json        epoch, step, best score, which checkpoint folder is current
    last.safetensors  best.safetensors   plain timm weights (head g beside, if any)

A checkpoint folder is complete before ``state.json`` (written atomically) points
to it, and older folders are deleted only after that, so a kill at any moment
leaves a consistent (state, weights) pair. Nothing is ever unpickled.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch.nn as nn

from scarce.data.datasets import safe_join
from scarce.engine.optim_state import flatten_optimizer, group_mismatch, unflatten_optimizer
from scarce.errors import UserError
from scarce.io import atomic_write_json, load_tensors, read_json, save_tensors
from scarce.models.heads import CosineHeadModel

HEAD_G_SUFFIX = ".head_g.safetensors"
STATE_SCHEMA = {"epoch": int, "checkpoint": str, "optimizer": dict, "global_step": int, "best": dict}


def split_state(state: dict, head_g: bool) -> tuple[dict, dict]:
    """(timm backbone state dict, head-g state dict) of a plain or (``head_g``) head-g model's state."""
    if not head_g:
        return state, {}
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    head = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    return backbone, head


def save_weights(model: nn.Module, path: Path, metadata: dict | None = None) -> None:
    """Write timm-loadable weights to ``path``; head g (if any) beside it."""
    model = getattr(model, "module", model)  # DDP
    save_state_weights(model.state_dict(), isinstance(model, CosineHeadModel), path, metadata)


def save_state_weights(state: dict, head_g: bool, path: Path, metadata: dict | None = None) -> None:
    """:func:`save_weights` of a state dict (e.g. a :func:`capture_state` snapshot's, after the live
    model has moved on); ``head_g``: the state is a head-g model's."""
    backbone, head = split_state(state, head_g)
    save_tensors(path, backbone, metadata)
    if head:
        save_tensors(path.with_suffix("").with_suffix(HEAD_G_SUFFIX), head, metadata)


def load_weights(model: nn.Module, path: Path) -> None:
    """Inverse of :func:`save_weights`; a mismatch names the file and the first differing keys."""
    model = getattr(model, "module", model)
    state = (
        {f"backbone.{k}": v for k, v in load_tensors(path).items()}
        if isinstance(model, CosineHeadModel)
        else load_tensors(path)
    )
    head_path = path.with_suffix("").with_suffix(HEAD_G_SUFFIX)
    if head_path.is_file():
        state.update(load_tensors(head_path))
    _load_state(model, state, path)


def _load_state(module: nn.Module, state: dict, path: Path) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = (
            f"missing {missing[:3]}"
            if missing
            else f"unexpected {unexpected[:3]}"
            if unexpected
            else f"shape of {wrong[0]} is {tuple(state[wrong[0]].shape)}, model needs {tuple(expected[wrong[0]].shape)}"
        )
        raise UserError(f"weights {path}: do not fit this model (other architecture or class count?): {detail}")
    module.load_state_dict(state)


def capture_state(
    epoch: int, model: nn.Module, optimizer, ema=None, scaler=None, extra: dict | None = None, copy: bool = False
) -> dict:
    """What a checkpoint holds for the end of ``epoch``; ``copy``: detached CPU copies, so the
    snapshot survives further training (written later, e.g. on a signal)."""

    def tensors(state: dict) -> dict:
        return {k: v.detach().to("cpu", copy=True) for k, v in state.items()} if copy else state

    opt_tensors, opt_meta = flatten_optimizer(optimizer.state_dict())
    if copy:
        import copy as copy_module

        opt_meta = copy_module.deepcopy(opt_meta)
    return {
        "epoch": epoch,
        "model": tensors(getattr(model, "module", model).state_dict()),
        "optimizer": tensors(opt_tensors),
        "optimizer_meta": opt_meta,
        "ema": tensors(ema.module.state_dict()) if ema is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "extra": dict(extra or {}),
    }


def restore_snapshot(snapshot: dict, model: nn.Module, optimizer, ema=None, scaler=None) -> None:
    """Put a :func:`capture_state` snapshot (``copy=True``) back into the live model, optimizer, EMA
    and scaler; the snapshot's tensors are copied, so training on does not change it."""

    def copied(state: dict) -> dict:
        return {k: v.clone() for k, v in state.items()}

    getattr(model, "module", model).load_state_dict(snapshot["model"])
    optimizer.load_state_dict(unflatten_optimizer(copied(snapshot["optimizer"]), snapshot["optimizer_meta"], optimizer))
    if ema is not None:
        ema.module.load_state_dict(snapshot["ema"])
    if scaler is not None and snapshot["scaler"]:
        scaler.load_state_dict(snapshot["scaler"])


def write_checkpoint(run_dir: Path, snapshot: dict) -> None:
    """Write a :func:`capture_state` snapshot as the resumable checkpoint and point state.json at it."""
    epoch = snapshot["epoch"]
    folder_name = f"checkpoints/epoch-{epoch:04d}"
    folder = run_dir / folder_name
    shutil.rmtree(folder, ignore_errors=True)  # a torn folder from a killed run
    save_tensors(folder / "model.safetensors", snapshot["model"])
    save_tensors(folder / "optimizer.safetensors", snapshot["optimizer"])
    if snapshot["ema"] is not None:
        save_tensors(folder / "ema.safetensors", snapshot["ema"])
    state = {
        "epoch": epoch,
        "checkpoint": folder_name,
        "optimizer": snapshot["optimizer_meta"],
        "scaler": snapshot["scaler"],
        **snapshot["extra"],
    }
    atomic_write_json(run_dir / "state.json", state)
    for old in (run_dir / "checkpoints").iterdir():
        if old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)


def record_best_in_checkpoint(run_dir: Path, best: dict) -> None:
    """After the end of a run wrote other weights to best.safetensors: the kept checkpoint's record
    of the best epoch says so too, or extending the run (``--resume RUN epochs=N``) would restore
    the old record beside the new file and could report one epoch while scoring another."""
    path = run_dir / "state.json"
    if path.is_file():
        atomic_write_json(path, {**read_json(path, STATE_SCHEMA), "best": dict(best)})


def save_checkpoint(
    run_dir: Path, epoch: int, model: nn.Module, optimizer, ema=None, scaler=None, extra: dict | None = None
) -> None:
    """Write a resumable checkpoint for the end of ``epoch`` (0-based) and point state.json at it."""
    write_checkpoint(run_dir, capture_state(epoch, model, optimizer, ema, scaler, extra))


def drop_checkpoint(run_dir: Path) -> None:
    """Remove the resumable checkpoint of a finished run: state.json first (no pointer is left
    to a half-removed folder), then every checkpoint folder."""
    (run_dir / "state.json").unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def _load_optimizer(run_dir: Path, optimizer, tensors: dict, meta: dict) -> None:
    """The checkpoint's optimizer state into ``optimizer``; one that does not fit (other parameter
    groups, e.g. from another timm version's grouping) is one line naming the run."""
    try:
        saved = unflatten_optimizer(tensors, meta, optimizer)
        optimizer.load_state_dict(saved)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        detail = group_mismatch(meta, optimizer) or f"{type(exc).__name__}: {exc}"
        raise UserError(
            f"--resume {run_dir}: the checkpoint's optimizer state does not fit this run's optimizer ({detail}); "
            f"resume with the run's optim settings and versions, or train a new run with --out"
        ) from None


def load_checkpoint(run_dir: Path, model: nn.Module, optimizer, ema=None, scaler=None) -> dict:
    """Restore what :func:`save_checkpoint` wrote; returns the state.json mapping."""
    state = read_json(run_dir / "state.json", STATE_SCHEMA)
    if not os.path.normpath(state["checkpoint"]).startswith("checkpoints" + os.sep):
        raise UserError(f"{run_dir / 'state.json'}: checkpoint {state['checkpoint']!r} is not under checkpoints/")
    folder = safe_join(run_dir, state["checkpoint"], what=str(run_dir / "state.json"))
    _load_state(getattr(model, "module", model), load_tensors(folder / "model.safetensors"), folder)
    _load_optimizer(run_dir, optimizer, load_tensors(folder / "optimizer.safetensors"), state["optimizer"])
    if ema is not None:
        ema_path = folder / "ema.safetensors"
        if not ema_path.is_file():
            raise UserError(f"resume {run_dir}: ema.enabled is true but the checkpoint has no EMA weights")
        _load_state(ema.module, load_tensors(ema_path), ema_path)
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return state
