"""What a run does before its first epoch: scan the data, try the model on one input, write the
run's record (config.yaml, classes.json, environment.json). What it prints: :mod:`describe`."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from scarce.config import Config, save_config
from scarce.data import DataBundle, build_data
from scarce.data.check import preflight, unreadable_train_files
from scarce.data.loader import decoded_cache_sides
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
    keep_sides = decoded_cache_sides(cfg.data, data.splits, cfg.augment.crop)
    splits, bad_images = preflight(data.splits, data.mode, cfg.data.skip_bad_images, keep_sides=keep_sides)
    colour = sum(s.colour_images for s in splits.values())
    files = sum(len(s.ids) for s in splits.values() if s.array is None)
    recolour = cfg.data.channels == "auto" and data.mode == "L" and colour > 0
    if recolour:
        print(
            f"data: {colour} of {files} images are in colour (the ones sampled to decide were gray): training in RGB "
            f"(set data.channels=gray to train in grayscale)",
            flush=True,
        )
    elif cfg.data.channels == "auto" and data.mode == "RGB" and files and colour < files:
        print(f"data: mixes modes ({files - colour} of {files} images gray); training in RGB", flush=True)
    val = data.splits.get("val")
    unreadable = unreadable_train_files(bad_images) if val is not None and val.from_train else []
    if recolour or unreadable:
        # the mode decided on every image (as set, or as auto chose), not a new guess from a few
        decided = "rgb" if recolour or data.mode == "RGB" else "gray"
        data = build_data(replace(cfg.data, channels=decided), unreadable=unreadable)
        splits, _ = preflight(data.splits, data.mode, cfg.data.skip_bad_images, keep_sides=keep_sides)
        # the files left out before the val draw were all in the train folder
        bad_images = [{**b, "split": "train"} if b["path"] in unreadable else b for b in bad_images]
    return replace(data, splits=splits), bad_images


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
