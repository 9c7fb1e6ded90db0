"""An optimizer's state dict as (tensors for safetensors, JSON-able metadata) and back.

timm's optimizers keep more than numbers: Lamb counts its steps in a tensor in each param
group, AdafactorBV names its momentum dtype in its groups, Kron keeps a list of preconditioner
tensors per parameter. Each travels exactly: tensors in the safetensors file (dtype kept, and
a group tensor back on its device), dtypes by name, the rest as JSON. A group setting of any
other type is refused when the optimizer is built (:func:`unrecordable_setting`).
"""

from __future__ import annotations

import json

import torch

from scarce.errors import UserError

GROUP_PREFIX = "group."  # safetensors names of group tensors; state tensors are "<param id>.<key>"


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _tensor_list(value: object) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(torch.is_tensor(v) for v in value)


def unrecordable_setting(optimizer: torch.optim.Optimizer) -> str | None:
    """The first param-group setting a checkpoint cannot record, as ``key (type)``; None if all can."""
    for group in optimizer.param_groups:
        for key, value in group.items():
            if key != "params" and not (torch.is_tensor(value) or isinstance(value, torch.dtype) or _jsonable(value)):
                return f"{key} ({type(value).__name__})"
    return None


def _flatten_state(state: dict, tensors: dict) -> tuple[dict, dict]:
    scalars, lists = {}, {}
    for pid, per_param in state.items():
        for key, value in per_param.items():
            name = f"{pid}.{key}"
            if torch.is_tensor(value):
                tensors[name] = value
            elif _tensor_list(value):
                lists[name] = [len(value), type(value).__name__]
                tensors.update({f"{name}.{j}": v for j, v in enumerate(value)})
            elif _jsonable(value):
                scalars[name] = value
            else:
                raise UserError(
                    f"optimizer state {key!r} ({type(value).__name__}) cannot be written to a checkpoint; "
                    f"train with another optim.name"
                )
    return scalars, lists


def flatten_optimizer(state_dict: dict) -> tuple[dict, dict]:
    """(tensors, JSON-able metadata) of ``optimizer.state_dict()``; inverse: :func:`unflatten_optimizer`."""
    tensors: dict = {}
    scalars, lists = _flatten_state(state_dict["state"], tensors)
    groups, dtypes, devices = [], {}, {}
    for i, group in enumerate(state_dict["param_groups"]):
        kept = {}
        for key, value in group.items():
            if torch.is_tensor(value):
                tensors[f"{GROUP_PREFIX}{i}.{key}"] = value
                if value.device.type != "cpu":
                    devices[f"{i}.{key}"] = value.device.type
            elif isinstance(value, torch.dtype):
                dtypes[f"{i}.{key}"] = str(value).removeprefix("torch.")
            else:
                kept[key] = value
        groups.append(kept)
    meta = {"scalars": scalars, "param_groups": groups}
    # only when present, so the checkpoints of torch's own optimizers are written as before
    meta.update({k: v for k, v in (("lists", lists), ("dtypes", dtypes), ("devices", devices)) if v})
    return tensors, meta


def _dtype(name: str) -> torch.dtype:
    value = getattr(torch, str(name), None)
    if not isinstance(value, torch.dtype):
        raise UserError(f"optimizer state: {name!r} is not a torch dtype (a damaged or edited state.json?)")
    return value


def _split(flat: str) -> tuple[int, str]:
    index, key = flat.split(".", 1)
    return int(index), key


def unflatten_optimizer(tensors: dict, meta: dict, optimizer: torch.optim.Optimizer) -> dict:
    """The state dict that :func:`flatten_optimizer` split, for ``optimizer.load_state_dict``; a group
    tensor that lived on an accelerator goes to the device of ``optimizer``'s group's parameters."""
    tensors = dict(tensors)
    groups = [dict(g) for g in meta["param_groups"]]
    live = [g["params"][0].device for g in optimizer.param_groups if g["params"]]
    for flat in [k for k in tensors if k.startswith(GROUP_PREFIX)]:
        i, key = _split(flat[len(GROUP_PREFIX) :])
        moved = f"{i}.{key}" in meta.get("devices", {}) and i < len(live)
        groups[i][key] = tensors.pop(flat).to(live[i]) if moved else tensors.pop(flat)
    for flat, name in meta.get("dtypes", {}).items():
        i, key = _split(flat)
        groups[i][key] = _dtype(name)
    state: dict = {}
    for flat, (count, kind) in meta.get("lists", {}).items():
        items = [tensors.pop(f"{flat}.{j}") for j in range(count)]
        pid, key = _split(flat)
        state.setdefault(pid, {})[key] = tuple(items) if kind == "tuple" else items
    for flat, value in list(tensors.items()) + list(meta["scalars"].items()):
        pid, key = _split(flat)
        state.setdefault(pid, {})[key] = value
    return {"state": state, "param_groups": groups}


def group_mismatch(saved: dict, optimizer: torch.optim.Optimizer) -> str | None:
    """How a saved state dict's parameter groups differ from ``optimizer``'s; None if they match."""
    saved_sizes = [len(g.get("params", [])) for g in saved.get("param_groups", [])]
    live_sizes = [len(g["params"]) for g in optimizer.param_groups]
    if saved_sizes == live_sizes:
        return None
    return f"parameter groups of {saved_sizes} parameters in the checkpoint, {live_sizes} in this run's optimizer"
