"""The lines a run prints before its first epoch: hardware, data and model, regularisation,
settings that have no effect, schedule; so a log says what the run trained with."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scarce.augment.mix import describe_mix
from scarce.config import Config
from scarce.engine.factories import schedule_steps
from scarce.errors import counted

if TYPE_CHECKING:
    from scarce.engine.prepare import Run


def startup_lines(run: Run) -> list[str]:
    """Every line, in the order printed."""
    return [
        run.hardware.describe(),
        *run.auto_notes,
        describe_data_and_model(run),
        describe_regularisation(run.cfg),
        *inert_settings(run.cfg),
        describe_schedule(run),
    ]


def describe_data_and_model(run: Run) -> str:
    """Two lines before training: images per split and class, mode and size; model and parameters."""
    data, cfg = run.data, run.cfg
    counts = {name: len(split.ids) for name, split in data.splits.items()}
    per_class = [data.splits["train"].targets.count(c) for c in range(len(data.classes))]
    params = sum(p.numel() for p in run.model.parameters())
    weighted = " (class-weighted)" if cfg.loss.class_weights == "auto" else ""
    hint = ""
    if max(per_class) > 2 * max(min(per_class), 1) and cfg.data.sampler == "random" and not weighted:
        hint = "; imbalanced: data.sampler=balanced or loss.class_weights=auto give every class equal weight"
    return (
        f"data: {len(data.classes)} classes, "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + f" images (train per class {min(per_class)}-{max(per_class)}{hint}), mode {data.mode} at "
        f"{cfg.data.img_size} px\n"
        f"model: {cfg.model.name}, {params / 1e6:.2f} M parameters, small_input "
        f"{str(cfg.model.small_input).lower()}, loss {cfg.loss.name}{loss_settings(cfg)}{weighted}, "
        f"optimizer {cfg.optim.name}"
    )


def loss_settings(cfg: Config) -> str:
    """`` (gamma 2, lam 0.1)``: the settings the configured loss takes, so a sweep's logs differ."""
    from scarce.losses.factory import accepted_kwargs

    taken = [k for k in LOSS_SETTINGS if k in accepted_kwargs(cfg.loss.name)]
    return f" ({', '.join(f'{k} {getattr(cfg.loss, k):g}' for k in taken)})" if taken else ""


LOSS_SETTINGS = ("smoothing", "gamma", "lam")


def inert_settings(cfg: Config) -> list[str]:
    """Keys set away from their defaults that the run does not use (their switch is off): an
    ablation that sweeps ``ema.decay`` with EMA off trains the same run N times."""
    from scarce.config import Config as Defaults
    from scarce.losses.factory import accepted_kwargs

    default, aug = Defaults(), cfg.augment
    groups = [
        ("ema", ("decay", "warmup"), not cfg.ema.enabled, "ema.enabled is false"),
        (
            "augment.lsb_swap",
            ("bits", "p", "partner", "stage", "placement"),
            not aug.lsb_swap.enabled,
            "augment.lsb_swap.enabled is false",
        ),
        (
            "augment.mix",
            ("prob", "switch_prob"),
            not (aug.mix.mixup_alpha or aug.mix.cutmix_alpha),
            "mixup_alpha and cutmix_alpha are 0",
        ),
        ("augment", ("re_mode",), not aug.re_prob, "augment.re_prob is 0"),
        (
            "loss",
            tuple(k for k in LOSS_SETTINGS if k not in accepted_kwargs(cfg.loss.name)),
            True,
            f"loss {cfg.loss.name} does not take it",
        ),
    ]
    notes = []
    for section, keys, off, why in groups:
        here, base = _section(cfg, section), _section(default, section)
        for key in keys if off else ():
            if getattr(here, key) != getattr(base, key):
                notes.append(f"note: {section}.{key}={getattr(here, key)} has no effect: {why}")
    return notes


def _section(cfg: Config, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def describe_schedule(run: Run) -> str:
    """One line: steps, warmup (and whether it was clipped), peak lr."""
    cfg = run.cfg
    updates = len(run.loaders["train"])
    total, warmup = schedule_steps(cfg, updates)
    asked = round(cfg.sched.warmup_epochs * updates)
    clipped = (
        f" (sched.warmup_epochs={cfg.sched.warmup_epochs:g} clipped to a fifth of the run)" if warmup < asked else ""
    )
    kept = f"the {run.select} weights"
    if run.select == "last" and cfg.checkpoint.select == "auto":
        kept += " (val too small to rank epochs)" if "val" in run.loaders else " (no val split)"
    if run.select == "clear_best":
        kept = "the final weights unless an earlier epoch is clearly better on val"
    images = len(run.loaders["train"].sampler)  # this process's share of the train images per epoch
    batch = (
        f" (batch_size {cfg.batch_size} > {images} train images: one step of all of them)"
        if cfg.batch_size > images
        else ""
    )
    return (
        f"schedule: {cfg.sched.name}, {counted(cfg.epochs, 'epoch')} x {counted(updates, 'step')} = "
        f"{counted(total, 'step')}{batch}, "
        f"warmup {counted(warmup, 'step')}{clipped}, peak lr {cfg.optim.lr:g}; keeps {kept}"
    )


def describe_regularisation(cfg: Config) -> str:
    """One line: every augmentation and regulariser that is on, so a run's log says what it trained with."""
    aug = cfg.augment
    parts = [f"crop pad {aug.pad}" if aug.crop == "pad" else f"crop resized (scale {aug.scale[0]:g}-{aug.scale[1]:g})"]
    parts += [f"hflip {aug.hflip:g}"] if aug.hflip else []
    parts += [f"randaugment {aug.randaugment}"] if aug.randaugment else []
    swap = aug.lsb_swap
    partner = "" if swap.partner == "any" else f", partner {swap.partner}"
    parts += (
        [f"lsb_swap {swap.bits} bits p {swap.p:g} ({swap.placement}, {swap.stage}{partner})"] if swap.enabled else []
    )
    mix = describe_mix(aug.mix.mixup_alpha, aug.mix.cutmix_alpha, aug.mix.prob)
    parts += [mix] if mix else []
    parts += [f"random erasing {aug.re_prob:g}"] if aug.re_prob else []
    parts += [f"dropout {cfg.model.drop_rate:g}"] if cfg.model.drop_rate else []
    parts += [f"drop path {cfg.model.drop_path_rate:g}"] if cfg.model.drop_path_rate else []
    parts += [f"ema {cfg.ema.decay:g}"] if cfg.ema.enabled else []
    return "regularisation: " + ", ".join(parts)
