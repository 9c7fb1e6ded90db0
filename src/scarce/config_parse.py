"""How a config is read and checked: recipe files (YAML, :mod:`scarce.config_yaml`), dotted overrides,
type coercion, choices and numeric ranges, with one-line errors that list what is valid.
The config's fields themselves are in :mod:`scarce.config`."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Union

import yaml

from scarce.config_yaml import load_yaml
from scarce.errors import UserError

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
# bool options also take YAML 1.1's words (recipes written for PyYAML's default loader)
BOOL_WORDS = {"yes": True, "on": True, "no": False, "off": False}


def opt(default: Any, help: str, choices: tuple | None = None, range: str | None = None) -> Any:
    """A config field with a help text, optional allowed values and an optional numeric range
    in interval notation (``"[0, 1)"``, ``"(0, inf)"``) that numbers (and list items) must lie in;
    with a range, ``choices`` applies to non-numbers only (``num_workers: auto`` or an int)."""
    meta = {"help": help, "choices": choices, "range": range}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def field_choices(tp: Any, meta: Mapping) -> tuple | None:
    """The values a field accepts besides numbers: its ``Literal`` arguments (with True/False
    when it also takes a bool), else the ``choices`` given to :func:`opt`."""
    members = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
    literals = tuple(a for m in members if typing.get_origin(m) is typing.Literal for a in typing.get_args(m))
    if not literals:
        return meta.get("choices")
    return literals + ((True, False) if bool in members else ())


def _takes_number(tp: Any) -> bool:
    """Whether a field with named choices also takes a number (``epochs: int | "auto"``)."""
    members = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
    return any(m in (int, float) for m in members)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted as floats."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        members = [a for a in args if a is not type(None)]
        for arg in members:
            try:
                return _coerce(value, arg, key)
            except UserError as exc:
                errors.append(exc)
        if len(members) == 1:
            raise errors[0]
        raise UserError(f"config key '{key}': expected {' or '.join(_type_name(a) for a in members)}, got {value!r}")
    if origin is typing.Literal:
        if not any(value == a and type(value) is type(a) for a in typing.get_args(tp)):
            close = difflib.get_close_matches(str(value), [str(a) for a in typing.get_args(tp)], n=3)
            hint = f" (close: {', '.join(close)})" if close else ""
            raise UserError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}{hint}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key '{key}': expected a list of {_type_name(item_tp)}, got {value!r}")
        return [_coerce(v, item_tp, key) for v in value]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(
                f"config key '{key}': expected a mapping of {sorted(f.name for f in dataclasses.fields(tp))}, got {value!r}"
            )
        return build(tp, value, prefix=key + ".")
    if tp is bool and isinstance(value, str):
        value = BOOL_WORDS.get(value.lower(), value)
    ok = (isinstance(value, tp) and not (tp is int and isinstance(value, bool))) or (
        tp is float and isinstance(value, int) and not isinstance(value, bool)
    )
    if not ok:
        raise UserError(
            f"config key '{key}': expected {_type_name(tp)}, got {value!r} ({type(value).__name__})"
            + (f": quote it to mean the text ('{value}')" if tp is str else "")
        )
    if tp is float and not math.isfinite(value):  # YAML's .nan / .inf: no setting means them
        raise UserError(f"config key '{key}': expected a finite number, got {value!r}")
    return float(value) if tp is float else value


def _leaf_paths(cls: type, prefix: str = "") -> list[str]:
    """Every key below dataclass ``cls``, dotted (``mix.mixup_alpha``)."""
    paths, hints = [], typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        below = _leaf_paths(tp, f"{prefix}{f.name}.") if dataclasses.is_dataclass(tp) else []
        paths += below or [prefix + f.name]
    return paths


def _key_hint(cls: type, key: str, prefix: str) -> str:
    """What the writer of an unknown key likely meant: a dotted key written in YAML (which nests),
    a key that lives one level further down, or a near spelling."""
    leaves = _leaf_paths(cls)
    if key in leaves:  # "optim.lr: 0.01" at the top of a recipe file
        section, _, rest = key.partition(".")
        return f" (in a recipe file, nest it: '{prefix}{section}:' then '  {rest}: ...'; dotted keys are for overrides)"
    deeper = [path for path in leaves if path.rsplit(".", 1)[-1] == key]
    close = deeper or difflib.get_close_matches(key, [f.name for f in dataclasses.fields(cls)], n=1, cutoff=0.75)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def build(cls: type, values: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, validating keys, types and choices."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise UserError(
            f"unknown config key '{prefix}{unknown[0]}'{_key_hint(cls, unknown[0], prefix)}; "
            f"valid keys here: {', '.join(prefix + k for k in fields)}"
        )
    kwargs = {}
    for name, value in values.items():
        coerced = _coerce(value, hints[name], prefix + name)
        meta = {**fields[name].metadata, "choices": field_choices(hints[name], fields[name].metadata)}
        _check_value(coerced, meta, prefix + name)
        kwargs[name] = coerced
    return cls(**kwargs)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _in_range(value: float, interval: str) -> bool:
    low, high = (float(part) for part in interval[1:-1].split(","))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return math.isfinite(value) and above and below


def _check_value(value: Any, meta: Mapping, key: str) -> None:
    """Choices and numeric range of one coerced config value (list items checked one by one)."""
    choices, interval = meta.get("choices"), meta.get("range")
    items = value if isinstance(value, list) else [value]
    if interval and all(_is_number(v) for v in items if v is not None):
        bad = [v for v in items if v is not None and not _in_range(v, interval)]
        if bad:
            raise UserError(f"config key '{key}': expected a finite number in {interval}, got {bad[0]!r}")
        return
    if choices and value not in choices:
        raise UserError(
            f"config key '{key}': expected one of {', '.join(map(str, choices))}"
            f"{f' or a number in {interval}' if interval else ''}, got {value!r}"
        )


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(pairs: list[str]) -> dict:
    """``["optim.lr=0.01", "epochs=2"]`` -> nested dict; values parsed as YAML (:func:`load_yaml`)."""
    tree: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise UserError(f"override '{pair}': expected dotted key=value, e.g. optim.lr=0.01")
        try:
            value = load_yaml(raw) if raw != "" else None
        except yaml.YAMLError:
            raise UserError(f"override '{pair}': the value is not valid YAML") from None
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override '{pair}': '{part}' is set both as a value and as a section")
        node[leaf] = value
    return tree


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def flat_keys(tree: dict, prefix: str = "") -> dict:
    """A nested config mapping as ``{"section.key": value}``."""
    out: dict = {}
    for key, value in tree.items():
        out.update(flat_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def read_recipe(recipe: str) -> dict:
    """A recipe name (``demo``) or a YAML path -> its mapping (:func:`load_yaml`)."""
    path = Path(recipe)
    if not path.is_file() and path.name == recipe:  # a bare name: a built-in recipe (a path stays a path)
        path = RECIPES_DIR / f"{recipe}.yaml"
    if not path.is_file():
        with_suffix = [f"{recipe}{suffix}" for suffix in (".yaml", ".yml") if Path(f"{recipe}{suffix}").is_file()]
        close = with_suffix or difflib.get_close_matches(recipe, available_recipes(), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(
            f"recipe '{recipe}': no such file or built-in recipe{hint}; built-in recipes: "
            f"{', '.join(available_recipes())}"
        )
    try:
        values = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"recipe {path}{where}: not valid YAML ({exc.problem or exc.context})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"recipe {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise UserError(f"recipe {path}: expected a mapping of config keys, got {type(values).__name__}")
    return values


def describe_fields(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """Rows (key, default, help) for every leaf key of dataclass ``cls``."""
    rows = []
    hints = typing.get_type_hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            rows += describe_fields(hints[f.name], prefix + f.name + ".")
            continue
        text = f.metadata.get("help", "")
        choices = field_choices(hints[f.name], f.metadata)
        if choices:
            text += f" [{'|'.join(map(str, choices))}{'|<number>' if _takes_number(hints[f.name]) else ''}]"
        shown = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").removesuffix(" ...")
        rows.append((prefix + f.name, shown, text))
    return rows
