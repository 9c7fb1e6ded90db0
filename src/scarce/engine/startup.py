"""What a run does before its first epoch: scan the data, try the model on one input, describe
the schedule, write the run's record (config.yaml, classes.json, environment.json)."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from scarce.augment.mix import describe_mix
from scarce.config import Config, save_config
from scarce.data import DataBundle, build_data
from scarce.data.check import preflight, unreadable_train_files
from scarce.data.loader import decoded_cache_sides
from scarce.engine.factories import schedule_steps
from scarce.errors import UserError, counted
from scarce.io import atomic_write_json

if TYPE_CHECKING:
    from scarce.engine.prepare import Run


def check_input_size(model: nn.Module, in_chans: int, img_size: int, device: torch.device) -> None:
    """A dry forward pass before anything is written: models with a fixed input size (ViT at
    224 px, ...) fail here in one line instead of after the run directory exists."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_chans, img_size, img_size, device=device))
    except (RuntimeError, AssertionError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"model.name: the model cannot take {img_size} px images ({first}); choose another "
            f"data.img_size or a model without a fixed input size"
        ) from None
    finally:
        model.train(was_training)


def check_batch_for_batch_norm(model: nn.Module, batch_size: int) -> None:
    """BatchNorm in train mode needs two values per channel: with one image a batch, a 1x1 feature
    map (resnet18's last stage at 32 px) fails mid-epoch; refuse before anything is written."""
    if batch_size < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise UserError(
            f"batch_size={batch_size}: the model has BatchNorm layers, which need at least 2 images a batch "
            f"(per process); give batch_size=2 or more"
        )


def scan_data(cfg: Config, data: DataBundle) -> tuple[DataBundle, list[dict]]:
    """The up-front scan (fail fast, before any epoch; decoded images kept when they fit). With
    ``data.channels=auto`` the mode is decided on every image, not on the first few. Skipped
    unreadable files of a train folder that val is drawn from leave it before the draw."""
    keep_sides = decoded_cache_sides(cfg.data, data.splits)
    splits, bad_images = preflight(data.splits, data.mode, cfg.data.skip_bad_images, keep_sides=keep_sides)
    colour = sum(s.colour_images for s in splits.values())
    files = sum(len(s.ids) for s in splits.values() if s.array is None)
    redo = {}
    if cfg.data.channels == "auto" and data.mode == "L" and colour:
        print(
            f"data: {colour} of {files} images are in colour (the first ones were gray): training in RGB "
            f"(set data.channels=gray to train in grayscale)",
            flush=True,
        )
        redo["channels"] = "rgb"
    elif cfg.data.channels == "auto" and data.mode == "RGB" and files and colour < files:
        print(f"data: mixes modes ({files - colour} of {files} images gray); training in RGB", flush=True)
    val = data.splits.get("val")
    unreadable = unreadable_train_files(bad_images) if val is not None and val.from_train else []
    if redo or unreadable:
        data = build_data(replace(cfg.data, **redo), unreadable=unreadable)
        splits, _ = preflight(data.splits, data.mode, cfg.data.skip_bad_images, keep_sides=keep_sides)
        # the files left out before the val draw were all in the train folder
        bad_images = [{**b, "split": "train"} if b["path"] in unreadable else b for b in bad_images]
    return replace(data, splits=splits), bad_images


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


def write_run_info(run: Run) -> None:
    """config.yaml, classes.json and environment.json beside the run's outputs."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    save_config(run.cfg, run.run_dir / "config.yaml")
    val = run.data.splits.get("val")
    atomic_write_json(
        run.run_dir / "classes.json",
        {
            "classes": run.data.classes,
            "mode": run.data.mode,
            "in_chans": run.data.in_chans,
            "mean": run.data.mean,
            "std": run.data.std,
            "fill": run.data.augment_fill(run.cfg.augment),
            "split_sizes": {k: len(v.ids) for k, v in run.data.splits.items()},
            "val_from_train": sorted(val.ids) if val is not None and val.from_train else None,
        },
    )
    if val is not None and val.from_train:
        fraction = run.cfg.data.val_fraction
        share = len(val.ids) / max(1, len(val.ids) + len(run.data.splits["train"].ids))
        # one image of each class is held out however few it has: with tiny classes that is far more
        more = (
            f"; that is {share:.0%} of the train folder, not {fraction:.0%}: every class with two images or "
            f"more gives at least one (give a val/ folder, or data.val_fraction=0 to train on every image)"
            if share > 1.5 * fraction
            else ""
        )
        print(
            f"no val/ folder: {len(val.ids)} train images (data.val_fraction={fraction:g}, "
            f"stratified, seed data.split_seed) are the val split; listed in classes.json{more}",
            flush=True,
        )
        alone = [c for i, c in enumerate(run.data.classes) if i not in set(val.targets)]
        if alone:  # a class's only image stays in train: it cannot also be held out
            print(f"val: no image of {', '.join(alone)} (one train image each, kept for training)", flush=True)
    write_environment(run)
    if run.cfg.data.skip_bad_images:
        atomic_write_json(run.run_dir / "bad_images.json", run.bad_images)
        skipped = counted(len(run.bad_images), "unreadable image")
        print(f"skipped {skipped} (list: {run.run_dir / 'bad_images.json'})", flush=True)


def write_environment(run: Run) -> None:
    """environment.json: versions, platform and the run's resolved speed settings (rewritten when
    a run changes them, e.g. :mod:`scarce.engine.amp_fallback`)."""
    atomic_write_json(
        run.run_dir / "environment.json",
        {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "timm": __import__("timm").__version__,
            "platform": platform.platform(),
            "device": str(run.device),
            "world_size": run.info.world_size,
            "local_world_size": int(os.environ.get("LOCAL_WORLD_SIZE", run.info.world_size)),  # per node
            "hardware": asdict(run.hardware),
            "cuda": torch.cuda.get_device_name(run.device) if run.device.type == "cuda" else None,
        },
    )


def validate_config(cfg: Config) -> None:
    """Checks across config keys that the per-key ranges cannot express (one line, exit 2)."""
    swap = cfg.augment.lsb_swap
    if swap.enabled and swap.stage == "batch" and swap.placement == "before_randaugment":
        raise UserError(
            "augment.lsb_swap: placement before_randaugment needs stage sample "
            "(the batch stage runs after all per-image transforms)"
        )
    if swap.enabled and swap.stage == "batch" and swap.partner == "same_class":
        raise UserError(
            "augment.lsb_swap: partner same_class needs stage sample (the batch stage pairs images "
            "within a batch, whatever their class)"
        )
    if cfg.model.prediction_source == "g":
        from scarce.losses import loss_requires_head_g

        if not loss_requires_head_g(cfg.loss.name):
            raise UserError(
                f"model.prediction_source=g: loss.name={cfg.loss.name} trains no head g "
                f"(focal_cosine and cosine_ce do); use logits, cosine or auto"
            )
    if cfg.data.small_images == "pad" and cfg.augment.crop != "pad":
        raise UserError(
            "data.small_images=pad needs augment.crop=pad (resized crops would train on images resized "
            "up while evaluation keeps them in a zero frame)"
        )
    if cfg.augment.crop == "pad" and cfg.data.crop_pct != 1.0:
        raise UserError(
            f"augment.crop=pad trains on the whole image: it needs data.crop_pct=1.0 (got "
            f"{cfg.data.crop_pct}), or evaluation would see a tighter crop than training"
        )
    if cfg.data.sampler == "balanced" and cfg.loss.class_weights == "auto":
        raise UserError(
            "data.sampler=balanced with loss.class_weights=auto balances the classes twice (rare classes "
            "would then outweigh the rest); choose one"
        )
    if cfg.checkpoint.select == "last" and cfg.patience:
        raise UserError(
            "checkpoint.select=last with patience: early stopping needs the best epoch; "
            "set checkpoint.select=best (or auto) or patience=0"
        )
    for key in ("scale", "ratio"):
        pair = getattr(cfg.augment, key)
        if len(pair) != 2 or pair[0] > pair[1]:
            raise UserError(f"config key 'augment.{key}': expected [low, high] with low <= high, got {pair}")
