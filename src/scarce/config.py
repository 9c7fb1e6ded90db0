"""Typed run configuration: YAML recipe -> dataclasses -> keyword arguments.

A recipe is a YAML file (read with ``yaml.SafeLoader``, YAML 1.2 scalars) whose nested keys mirror
:class:`Config`. Command-line overrides are dotted ``key=value`` pairs whose
values are parsed as YAML scalars (``optim.lr=0.01``, ``augment.randaugment=null``).
Unknown keys and wrong types fail with a one-line :class:`UserError` that lists
what is valid, so a typo never silently trains the wrong recipe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from scarce.config_augment import AugmentConfig, LsbSwapConfig, MixConfig  # noqa: F401  (re-exported)
from scarce.config_data import DataConfig, check_data_source, check_sampling_keys, data_label, folders_only  # noqa: F401  (re-exported)
from scarce.config_parse import (  # noqa: F401  (re-exported: the config API in one place)
    RECIPES_DIR,
    _merge,
    available_recipes,
    build,
    describe_fields,
    field_choices,
    flat_keys,
    opt,
    parse_overrides,
    read_recipe,
)
from scarce.config_yaml import dump_yaml
from scarce.errors import UserError


@dataclass
class ModelConfig:
    name: str = opt("resnet18", "any timm model name")
    small_input: bool | Literal["auto"] = opt(
        False,
        "remove the stem's early downsampling (ResNet, EfficientNet/MobileNet, "
        "ConvNeXt); auto: on below 32 px (at 32 it lost 3 points on Fashion-MNIST for 4.8x the "
        "time per epoch, where upsampling to 64 px gained 0.6: BENCHMARKS.md)",
    )
    precise_bn: bool | Literal["auto"] = opt(
        "auto",
        "recompute BatchNorm statistics on the train images before each evaluation "
        "(running averages lag a fast-changing network); auto: in runs of fewer "
        "than 500 optimizer steps",
    )
    drop_rate: float = opt(0.0, "dropout before the classifier", range="[0, 1)")
    drop_path_rate: float = opt(0.0, "drop path (drop connect) rate", range="[0, 1)")
    prediction_source: Literal["auto", "logits", "g", "cosine"] = opt(
        "auto",
        "probabilities from logits, g (head g) or cosine (fixed-scale cosine "
        "scores); auto: cosine for cosine-family losses, else logits",
    )


@dataclass
class LossConfig:
    name: Literal["ce", "label_smoothing", "cosine", "cosine_ce", "focal", "focal_cosine", "focal_cosine_authors"] = (
        opt("ce", "the loss (scarce.losses.LOSS_NAMES)")
    )
    smoothing: float = opt(0.1, "label_smoothing: smoothing factor", range="[0, 1)")
    gamma: float = opt(2.0, "focal losses: focusing parameter", range="[0, inf)")
    lam: float = opt(0.1, "cosine_ce / focal_cosine: weight of the head-g term", range="[0, inf)")
    class_weights: Literal["none", "auto"] = opt(
        "none",
        "auto: weight each sample by n / (classes x its class's train count), so "
        "every class counts equally (imbalanced data); none: equal weights",
    )


@dataclass
class OptimConfig:
    name: str = opt("adamw", "any timm optimizer name (sgd, adamw, rmsproptf, lamb, ...)")
    lr: float = opt(1e-3, "peak learning rate", range="(0, inf)")
    weight_decay: float = opt(0.05, "weight decay", range="[0, inf)")
    momentum: float = opt(
        0.9, "momentum, for optimizers that have one (sgd, nesterov, sgdw, lars, rmsprop, madgrad, ...)", range="[0, 1)"
    )
    eps: float | None = opt(None, "optimizer epsilon (null: the optimizer's default)", range="(0, inf)")
    decay_norm_and_bias: bool = opt(
        False,
        "apply weight decay to norm weights and biases too (timm's default, "
        "false, exempts them; a plain torch optimizer decays every parameter)",
    )


@dataclass
class SchedConfig:
    name: Literal["cosine", "tanh", "step", "multistep", "poly", "constant"] = opt(
        "cosine", "timm scheduler, stepped per optimizer update"
    )
    warmup_epochs: float | Literal["auto"] = opt(
        0.0,
        "linear warmup epochs (fractions allowed; clipped to a fifth of the run); auto: 15 % of the epochs",
        range="[0, inf)",
    )
    warmup_lr: float = opt(1e-5, "learning rate at the start of warmup", range="[0, inf)")
    min_lr: float = opt(1e-6, "final learning rate (cosine)", range="[0, inf)")
    decay_epochs: float = opt(2.4, "step: epochs between decays, counted from the end of warmup", range="(0, inf)")
    decay_rate: float = opt(
        0.97, "step, multistep: multiplicative decay; poly: the power of the decay", range="(0, inf)"
    )
    decay_milestones: list[float] = opt(
        [90.0, 180.0, 270.0], "multistep: epochs of the run at which the lr decays (one inside warmup: at its end)"
    )


@dataclass
class EmaConfig:
    enabled: bool = opt(False, "keep an exponential moving average of the weights (timm ModelEmaV3)")
    decay: float = opt(0.999, "EMA decay per optimizer step", range="[0, 1)")
    warmup: bool = opt(
        True,
        "ramp the decay up as timm does, 1 - (1 + step)^(-2/3): it reaches ema.decay only after "
        "(1 - decay)^-1.5 steps (0.995: 2,800; 0.999: 31,600)",
    )


@dataclass
class CheckpointConfig:
    every_seconds: float = opt(
        60.0,
        "write the resumable checkpoint once this long has passed since the last "
        "(always at the end of the run and on SIGINT/SIGTERM)",
        range="[0, inf)",
    )
    every_epochs: int = opt(0, "also write it every N epochs (0: only by time)", range="[0, inf)")
    keep_at_end: bool = opt(
        False,
        "keep the resumable checkpoint (optimizer state) when the run finishes, so that "
        "--resume RUN epochs=N can extend it; false: only the weights files stay "
        "(a ResNet-18 run: 135 MB less)",
    )
    select: Literal["auto", "best", "last"] = opt(
        "auto",
        "the weights the run scores and ships (best.safetensors): best (the evaluated "
        "epoch with the highest val top-1), last (the final epoch's, raw or EMA by val), "
        "auto: with patience best; with fewer than 20 val images per class last (too few to "
        "rank epochs); else the final weights unless an earlier epoch's val top-1 beats them by "
        "more than 2 binomial standard errors (the highest of many noisy evaluations is a lucky one)",
    )


@dataclass
class LogConfig:
    tensorboard: bool = opt(False, "also write epoch scalars to RUN_DIR/tensorboard (needs the tensorboard package)")


@dataclass
class Config:
    epochs: int | Literal["auto"] = opt(
        30,
        "training epochs; auto: at least 300 epochs and 2400 optimizer steps "
        "(chosen from the train set's size, saved in the run's config.yaml)",
        range="[1, inf)",
    )
    batch_size: int = opt(32, "batch size per process", range="[1, inf)")
    seed: int = opt(0, "fixes model init, data order and augmentation", range="[0, inf)")
    device: str = opt("auto", "auto, cpu, cuda, cuda:N")
    amp: Literal["auto", "none", "bf16", "fp16"] = opt(
        "auto",
        "autocast dtype; auto: bf16 on CUDA; on a CPU the faster of none / bf16 (bf16 only where native), timed at start",
    )
    channels_last: bool | Literal["auto"] = opt(
        "auto", "channels_last memory format; auto: on CUDA; on a CPU timed at start against contiguous"
    )
    threads: int | None = opt(
        None,
        "torch threads (null: OMP_NUM_THREADS if set, else the cores, shared among torchrun's local processes)",
        range="[1, 1024]",
    )
    clip_grad: float | None = opt(None, "max gradient norm (null: no clipping)", range="(0, inf)")
    deterministic: bool = opt(False, "deterministic algorithms (bit-exact resume on CPU)")
    patience: int = opt(
        0,
        "early stopping: end the run after this many evaluations without a better val top-1 "
        "(0: off); the best weights are kept and scored",
        range="[0, inf)",
    )
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


def load_config(recipe: str | None = None, overrides: list[str] | None = None, extra: dict | None = None) -> Config:
    """Defaults <- recipe <- ``extra`` (e.g. ``--data``) <- dotted overrides."""
    values = read_recipe(recipe) if recipe else {}
    try:  # a bad key or value in the recipe file is named with the file, not taken for an override
        build(Config, values)
    except UserError as exc:
        raise UserError(f"recipe {recipe}: {exc}") from None
    values = _merge(values, extra or {})
    values = _merge(values, parse_overrides(overrides or []))
    cfg = build(Config, values)
    cfg = dataclasses.replace(cfg, data=folders_only(cfg.data))
    check_sampling_keys(cfg.data)
    return cfg


def saved_config(path: str | Path) -> Config:
    """A run's ``config.yaml`` as saved, without :func:`load_config`'s checks (older runs saved keys
    that later became refused); a folder-only run saved as ``name: demo`` reads as ``null``, as now."""
    cfg = build(Config, read_recipe(str(path)))  # SafeLoader; bad YAML is a one-line UserError
    return dataclasses.replace(cfg, data=folders_only(cfg.data))


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: Path) -> None:
    from scarce.io import atomic_write_text

    atomic_write_text(path, dump_yaml(config_to_dict(cfg)))


def describe() -> list[tuple[str, str, str]]:
    """Rows (key, default, help) for every config key, for ``scarce train --help``."""
    return describe_fields(Config)
