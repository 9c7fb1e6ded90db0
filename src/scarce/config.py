"""Typed run configuration: YAML recipe -> dataclasses -> keyword arguments.

A recipe is a YAML file (read with ``yaml.safe_load``) whose nested keys mirror
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

import yaml

from scarce.config_augment import AugmentConfig, LsbSwapConfig, MixConfig  # noqa: F401  (re-exported)
from scarce.config_parse import (  # noqa: F401  (re-exported: the config API in one place)
    RECIPES_DIR,
    _merge,
    available_recipes,
    build,
    describe_fields,
    field_choices,
    opt,
    parse_overrides,
    read_recipe,
)
from scarce.errors import UserError


@dataclass
class DataConfig:
    name: str = opt("demo", "built-in dataset (demo, fashion-mnist) or image-folder root with train/val/test")
    train: str | None = opt(None, "train image folder (overrides <name>/train)")
    val: str | None = opt(None, "val image folder (overrides <name>/val)")
    test: str | None = opt(None, "test image folder (overrides <name>/test)")
    root: str | None = opt(None, "fashion-mnist: folder with the IDX .gz files (default: Debian's)")
    per_class: int | None = opt(
        None,
        "fashion-mnist only: train images per class sampled from the 60k set (refused for image folders: "
        "make a k-per-class copy with scarce data subset)",
        range="[1, inf)",
    )
    val_per_class: int | None = opt(
        None,
        "fashion-mnist only: val images per class, disjoint from train (0: no val split; refused for image folders)",
        range="[0, inf)",
    )
    val_fraction: float = opt(
        0.1,
        "image folders without val/: this stratified fraction of train becomes val (0: no val split)",
        range="[0, 0.9]",
    )
    split_seed: int = opt(0, "seed of the per-class sampling", range="[0, inf)")
    img_size: int | Literal["auto"] = opt(
        64,
        "training and evaluation resolution (small images are resized up); auto: the "
        "median train image's shorter side rounded up to a multiple of 32, in [64, 224] "
        "(small images are upsampled: 64 beat 32 px on 28 px Fashion-MNIST)",
        range="[8, 4096]",
    )
    channels: Literal["auto", "gray", "rgb"] = opt(
        "auto", "auto: keep the data's mode; gray: in_chans=1; rgb: expand grayscale to 3 channels"
    )
    normalize: Literal["imagenet", "train"] = opt(
        "imagenet",
        "per-channel mean and std that inputs are normalised with: imagenet (timm's constants) or "
        "train (measured on the train images, e.g. 0.286 / 0.353 on Fashion-MNIST); saved in classes.json",
    )
    small_images: Literal["resize", "pad"] = opt(
        "resize",
        "images no larger than img_size: resize them up (bilinear), or pad them with zeros to img_size, "
        "centred, keeping their pixels (a 28 px image in a 32 px frame, as CIFAR-style loops feed it); "
        "the evaluation view and crop=pad follow it",
    )
    crop_pct: float = opt(1.0, "evaluation: resize to img_size/crop_pct then center-crop img_size", range="(0, 1]")
    num_workers: int | Literal["auto"] = opt(
        "auto",
        "data-loading worker processes (0: in the main process); auto: 0 for "
        "in-memory images, else the cores the compute threads leave",
        range="[0, 256]",
    )
    keep_last_batch: bool = opt(
        False,
        "train on the last, smaller batch of each epoch too (false: drop it, "
        "so each epoch leaves a random remainder of the images out; a last batch of "
        "one image is always dropped: BatchNorm cannot normalise it)",
    )
    sampler: Literal["random", "balanced"] = opt(
        "random",
        "random: each image once per epoch; balanced: draws with replacement, every "
        "class equally likely (imbalanced data)",
    )
    cache: Literal["auto", "ram", "none"] = opt(
        "auto",
        "keep decoded images in memory (decoded once, by the up-front scan); auto: when they "
        "fit in 2 GB at 1.15 x the evaluation resize",
    )
    skip_bad_images: bool = opt(False, "skip unreadable images (counted, listed in the run dir) instead of failing")
    bit_depth: int | None = opt(
        None,
        "16-bit (integer) images: their sensor's bit depth, 2^bit_depth - 1 read as white (e.g. 12 for "
        "12-bit data in 16-bit PNGs); null: per image, the smallest of 8/10/12/14/16 bits that holds its "
        "largest value (a dim image then reads brighter)",
        range="[1, 16]",
    )


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
    momentum: float = opt(0.9, "momentum (sgd, rmsprop)", range="[0, 1)")
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
    values = _merge(values, extra or {})
    values = _merge(values, parse_overrides(overrides or []))
    cfg = build(Config, values)
    check_sampling_keys(cfg.data)
    return cfg


def check_sampling_keys(data: DataConfig) -> None:
    """Refuse ``data.per_class`` / ``data.val_per_class`` beside an image folder: only the
    built-in fashion-mnist is sampled from, and a folder run would silently train on every image."""
    for key in ("per_class", "val_per_class"):
        value = getattr(data, key)
        if data.name != "fashion-mnist" and value is not None:
            option = key.replace("_", "-")
            instead = (
                "for no val split from a folder's train images use data.val_fraction=0"
                if key == "val_per_class" and value == 0
                else f"for a folder make a k-per-class copy with `scarce data subset SRC DST --{option} {value}`"
            )
            raise UserError(
                f"data.{key}={value}: applies only to data.name=fashion-mnist (sampled from its 60k set), "
                f"not to image folder '{data.name}'; {instead}, or unset it with data.{key}=null"
            )


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: Path) -> None:
    from scarce.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def describe() -> list[tuple[str, str, str]]:
    """Rows (key, default, help) for every config key, for ``scarce train --help``."""
    return describe_fields(Config)
