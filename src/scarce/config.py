"""Typed run configuration: YAML recipe -> dataclasses -> keyword arguments.

A recipe is a YAML file (read with ``yaml.safe_load``) whose nested keys mirror
:class:`Config`. Command-line overrides are dotted ``key=value`` pairs whose
values are parsed as YAML scalars (``optim.lr=0.01``, ``augment.randaugment=null``).
Unknown keys and wrong types fail with a one-line :class:`UserError` that lists
what is valid, so a typo never silently trains the wrong recipe.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

import yaml

from scarce.errors import UserError

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


def opt(default: Any, help: str, choices: tuple | None = None, range: str | None = None) -> Any:
    """A config field with a help text, optional allowed values and an optional numeric range
    in interval notation (``"[0, 1)"``, ``"(0, inf)"``) that numbers (and list items) must lie in;
    with a range, ``choices`` applies to non-numbers only (``num_workers: auto`` or an int)."""
    meta = {"help": help, "choices": choices, "range": range}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    name: str = opt("demo", "built-in dataset (demo, fashion-mnist) or image-folder root with train/val/test")
    train: str | None = opt(None, "train image folder (overrides <name>/train)")
    val: str | None = opt(None, "val image folder (overrides <name>/val)")
    test: str | None = opt(None, "test image folder (overrides <name>/test)")
    root: str | None = opt(None, "fashion-mnist: folder with the IDX .gz files (default: Debian's)")
    per_class: int | None = opt(None, "fashion-mnist: train images per class sampled from the 60k set")
    val_per_class: int | None = opt(None, "fashion-mnist: val images per class, disjoint from train")
    val_fraction: float = opt(0.1, "image folders without val/: this stratified fraction of train becomes val "
                                   "(0: no val split)", range="[0, 0.9]")
    split_seed: int = opt(0, "seed of the per-class sampling", range="[0, inf)")
    img_size: int = opt(64, "training and evaluation resolution (small images are resized up)", range="[8, 4096]")
    channels: str = opt("auto", "auto: keep the data's mode; gray: in_chans=1; rgb: expand grayscale to 3 channels",
                        ("auto", "gray", "rgb"))
    crop_pct: float = opt(1.0, "evaluation: resize to img_size/crop_pct then center-crop img_size", range="(0, 1]")
    num_workers: int | str = opt("auto", "data-loading worker processes (0: in the main process); auto: 0 for "
                                         "in-memory images, else the cores the compute threads leave",
                                 ("auto",), range="[0, 256]")
    sampler: str = opt("random", "random: each image once per epoch; balanced: draws with replacement, every "
                                 "class equally likely (imbalanced data)", ("random", "balanced"))
    cache: str = opt("auto", "keep decoded images in memory (decoded once, by the up-front scan); auto: when they "
                             "fit in 2 GB at 1.15 x the evaluation resize", ("auto", "ram", "none"))
    skip_bad_images: bool = opt(False, "skip unreadable images (counted, listed in the run dir) instead of failing")


@dataclass
class LsbSwapConfig:
    enabled: bool = opt(False, "swap the low bits of every pixel with a partner image")
    bits: int = opt(2, "number of least-significant bits swapped (1..7)", range="[1, 7]")
    p: float = opt(0.5, "probability that an image is swapped", range="[0, 1]")
    partner: str = opt("any", "partner image: any class or same_class (sample stage only)", ("any", "same_class"))
    stage: str = opt("batch", "sample: in the dataset; batch: on the uint8 batch, on the device", ("sample", "batch"))
    placement: str = opt("last", "last: after all uint8 transforms; before_randaugment: the paper's placement",
                         ("last", "before_randaugment"))


@dataclass
class AugmentConfig:
    scale: list[float] = opt([0.35, 1.0], "RandomResizedCrop area range", range="(0, 1]")
    ratio: list[float] = opt([0.75, 1.3333333], "RandomResizedCrop aspect-ratio range", range="(0, inf)")
    hflip: float = opt(0.5, "horizontal flip probability", range="[0, 1]")
    randaugment: str | None = opt(None, "timm RandAugment string, e.g. rand-m9-mstd0.5 (null: off)")
    re_prob: float = opt(0.0, "random erasing probability (applied after normalisation, on the device)", range="[0, 1]")
    re_mode: str = opt("pixel", "random erasing fill", ("const", "rand", "pixel"))
    lsb_swap: LsbSwapConfig = field(default_factory=LsbSwapConfig)


@dataclass
class ModelConfig:
    name: str = opt("resnet18", "any timm model name")
    small_input: bool | str = opt("auto", "remove the stem's early downsampling (ResNet, EfficientNet/MobileNet, "
                                          "ConvNeXt); auto: on at data.img_size <= 40", ("auto", True, False))
    precise_bn: bool | str = opt("auto", "recompute BatchNorm statistics on the train images before each evaluation "
                                         "(running averages lag a fast-changing network); auto: in runs of fewer "
                                         "than 500 optimizer steps", ("auto", True, False))
    drop_rate: float = opt(0.0, "dropout before the classifier", range="[0, 1)")
    drop_path_rate: float = opt(0.0, "drop path (drop connect) rate", range="[0, 1)")
    prediction_source: str = opt("auto", "probabilities from logits, g (head g) or cosine (fixed-scale cosine "
                                         "scores); auto: cosine for cosine-family losses, else logits",
                                 ("auto", "logits", "g", "cosine"))


@dataclass
class LossConfig:
    name: str = opt("ce", "ce, label_smoothing, cosine, cosine_ce, focal, focal_cosine, focal_cosine_authors")
    smoothing: float = opt(0.1, "label_smoothing: smoothing factor", range="[0, 1)")
    gamma: float = opt(2.0, "focal losses: focusing parameter", range="[0, inf)")
    lam: float = opt(0.1, "cosine_ce / focal_cosine: weight of the head-g term", range="[0, inf)")


@dataclass
class OptimConfig:
    name: str = opt("adamw", "any timm optimizer name (sgd, adamw, rmsproptf, lamb, ...)")
    lr: float = opt(1e-3, "peak learning rate", range="(0, inf)")
    weight_decay: float = opt(0.05, "weight decay", range="[0, inf)")
    momentum: float = opt(0.9, "momentum (sgd, rmsprop)", range="[0, 1)")
    eps: float | None = opt(None, "optimizer epsilon (null: the optimizer's default)", range="(0, inf)")


@dataclass
class SchedConfig:
    name: str = opt("cosine", "timm scheduler, stepped per optimizer update: cosine, tanh, step, multistep, poly, constant")
    warmup_epochs: float = opt(0.0, "linear warmup epochs (fractions allowed; clipped to a fifth of the run)",
                               range="[0, inf)")
    warmup_lr: float = opt(1e-5, "learning rate at the start of warmup", range="[0, inf)")
    min_lr: float = opt(1e-6, "final learning rate (cosine)", range="[0, inf)")
    decay_epochs: float = opt(2.4, "step: epochs between decays", range="(0, inf)")
    decay_rate: float = opt(0.97, "step, multistep: multiplicative decay", range="(0, inf)")
    decay_milestones: list[float] = opt([90.0, 180.0, 270.0], "multistep: epochs at which the lr decays")


@dataclass
class EmaConfig:
    enabled: bool = opt(False, "keep an exponential moving average of the weights (timm ModelEmaV3)")
    decay: float = opt(0.999, "EMA decay per optimizer step", range="[0, 1)")
    warmup: bool = opt(True, "ramp the decay up early in training")


@dataclass
class CheckpointConfig:
    every_seconds: float = opt(60.0, "write the resumable checkpoint once this long has passed since the last "
                                     "(always at the end of the run and on SIGINT/SIGTERM)", range="[0, inf)")
    every_epochs: int = opt(0, "also write it every N epochs (0: only by time)", range="[0, inf)")


@dataclass
class LogConfig:
    tensorboard: bool = opt(False, "also write epoch scalars to RUN_DIR/tensorboard (needs the tensorboard package)")


@dataclass
class Config:
    epochs: int = opt(30, "training epochs", range="[1, inf)")
    batch_size: int = opt(32, "batch size per process", range="[1, inf)")
    seed: int = opt(0, "fixes model init, data order and augmentation", range="[0, inf)")
    device: str = opt("auto", "auto, cpu, cuda, cuda:N")
    amp: str = opt("auto", "autocast dtype; auto: bf16 where it is native (CUDA, CPUs with AMX/AVX512-BF16), "
                           "else none", ("auto", "none", "bf16", "fp16"))
    channels_last: bool | str = opt("auto", "channels_last memory format; auto: on CUDA and on CPUs with native bf16",
                                    ("auto", True, False))
    threads: int | None = opt(None, "torch threads (null: OMP_NUM_THREADS if set, else the cores, shared among torchrun's local processes)", range="[1, 1024]")
    clip_grad: float | None = opt(None, "max gradient norm (null: no clipping)", range="(0, inf)")
    deterministic: bool = opt(False, "deterministic algorithms (bit-exact resume on CPU)")
    patience: int = opt(0, "early stopping: end the run after this many evaluations without a better val top-1 "
                           "(0: off); the best weights are kept and scored", range="[0, inf)")
    eval_every: int = opt(1, "evaluate on val every N epochs (and at the last)", range="[1, inf)")
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)


# ---------------------------------------------------------------- building

def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted as floats."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except UserError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key '{key}': expected a list of {_type_name(item_tp)}, got {value!r}")
        return [_coerce(v, item_tp, key) for v in value]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}': expected a mapping of {sorted(f.name for f in dataclasses.fields(tp))}, got {value!r}")
        return build(tp, value, prefix=key + ".")
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-3 (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    ok = (isinstance(value, tp) and not (tp is int and isinstance(value, bool))) or (
        tp is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise UserError(f"config key '{key}': expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    return float(value) if tp is float else value


def build(cls: type, values: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, validating keys, types and choices."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise UserError(f"unknown config key '{prefix}{unknown[0]}'; valid keys here: {', '.join(prefix + k for k in fields)}")
    kwargs = {}
    for name, value in values.items():
        coerced = _coerce(value, hints[name], prefix + name)
        _check_value(coerced, fields[name].metadata, prefix + name)
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
        raise UserError(f"config key '{key}': expected one of {', '.join(map(str, choices))}"
                        f"{f' or a number in {interval}' if interval else ''}, got {value!r}")


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(pairs: list[str]) -> dict:
    """``["optim.lr=0.01", "epochs=2"]`` -> nested dict; values parsed as YAML scalars."""
    tree: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise UserError(f"override '{pair}': expected dotted key=value, e.g. optim.lr=0.01")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
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


def read_recipe(recipe: str) -> dict:
    """A recipe name (``demo``) or a YAML path -> its mapping (``yaml.safe_load``)."""
    path = Path(recipe)
    if not path.is_file():
        path = RECIPES_DIR / f"{recipe}.yaml"
    if not path.is_file():
        raise UserError(f"recipe '{recipe}': no such file or built-in recipe; built-in recipes: {', '.join(available_recipes())}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"recipe {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise UserError(f"recipe {path}: expected a mapping of config keys, got {type(values).__name__}")
    return values


def load_config(recipe: str | None = None, overrides: list[str] | None = None,
                extra: dict | None = None) -> Config:
    """Defaults <- recipe <- ``extra`` (e.g. ``--data``) <- dotted overrides."""
    values = read_recipe(recipe) if recipe else {}
    values = _merge(values, extra or {})
    values = _merge(values, parse_overrides(overrides or []))
    return build(Config, values)


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: Path) -> None:
    from scarce.io import atomic_write_text
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def describe(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """Rows (key, default, help) for every leaf key, for ``scarce train --help``."""
    rows = []
    hints = typing.get_type_hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            rows += describe(hints[f.name], prefix + f.name + ".")
            continue
        text = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            text += f" [{'|'.join(map(str, f.metadata['choices']))}]"
        rows.append((prefix + f.name, yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").removesuffix(" ..."), text))
    return rows
