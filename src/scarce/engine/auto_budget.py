"""``auto`` resolution, epochs, warmup and crop padding, chosen from the data (the ``small`` recipe).

Resolved once, before anything is built from them; the run's ``config.yaml`` holds the
numbers, so a resumed run or a copied config trains exactly the same.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from pathlib import Path

from PIL import Image

from scarce.config import Config
from scarce.data.datasets import Split, spread_picks
from scarce.data.loader import steps_per_epoch
from scarce.errors import counted

# The Fashion-MNIST 50/class budget (BENCHMARKS.md, session 15): 300 epochs of 8 steps (the best
# config at 64 px: +1.5 test points over 100 epochs on each of 3 seeds, held-out too). Smaller
# sets get more epochs so that every run takes at least as many optimizer steps.
AUTO_MIN_EPOCHS = 300
AUTO_MIN_STEPS = 2400
AUTO_WARMUP_FRACTION = 0.15
# Resolution: the median train image's shorter side, rounded up to a multiple of 32 (timm's
# strides), at least 64 and at most 224 (larger images are downsampled to the usual size). At 32 px
# an ImageNet-stem network ends on a 1x1 map; 28 px Fashion-MNIST upsampled to 64 beat 32 px on every
# seed (best config, 100 epochs: test +0.61 +- 0.43, held-out +0.43; BENCHMARKS.md session 14) for
# twice the train time, where removing the stem's downsampling (16x the compute) lost.
SIZE_MULTIPLE, MIN_SIZE, MAX_SIZE = 32, 64, 224
SIZE_SAMPLE = 256  # images whose headers are read
# Padded-shift crops: pad 2 at 32 px won on Fashion-MNIST val (BENCHMARKS.md); other sizes keep
# the same fraction (measured at 32 px only).
PAD_DIVISOR = 16


def auto_img_size(short_sides: list[int]) -> int:
    """Training resolution from the shorter sides of (a sample of) the train images."""
    median = statistics.median(short_sides)
    return int(min(MAX_SIZE, max(MIN_SIZE, math.ceil(median / SIZE_MULTIPLE) * SIZE_MULTIPLE)))


def auto_epochs(steps_per_epoch: int) -> int:
    """At least ``AUTO_MIN_EPOCHS`` epochs and ``AUTO_MIN_STEPS`` optimizer steps."""
    return max(AUTO_MIN_EPOCHS, math.ceil(AUTO_MIN_STEPS / max(steps_per_epoch, 1)))


def train_short_sides(split: Split, limit: int = SIZE_SAMPLE) -> list[int]:
    """Shorter sides of up to ``limit`` evenly spaced train images (headers only: no decoding)."""
    if split.array is not None:
        return [min(split.array.shape[1:3])]
    sides = []
    for i in spread_picks(len(split.ids), limit):
        try:
            with Image.open(Path(split.root) / split.ids[i]) as img:
                sides.append(min(img.size))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue  # unreadable: the up-front scan names it
    return sides or [MIN_SIZE]


def resolve_auto_size(cfg: Config, train: Split) -> tuple[Config, list[str]]:
    """``data.img_size`` and ``augment.pad`` resolved where ``auto`` (before the image scan, which
    keeps decoded images at a size derived from ``img_size``), one line per choice."""
    notes = []
    if cfg.data.img_size == "auto":
        sides = train_short_sides(train)
        size = auto_img_size(sides)
        notes.append(
            f"data.img_size auto: {size} px (median shorter side {statistics.median(sides):g} px "
            f"of {len(sides)} train images)"
        )
        cfg = replace(cfg, data=replace(cfg.data, img_size=size))
    if cfg.augment.pad == "auto":
        pad = max(1, round(cfg.data.img_size / PAD_DIVISOR))
        notes.append(f"augment.pad auto: {pad} px (img_size / {PAD_DIVISOR})")
        cfg = replace(cfg, augment=replace(cfg.augment, pad=pad))
    return cfg, notes


def resolve_auto_epochs(cfg: Config, train: Split, world_size: int = 1) -> tuple[Config, list[str]]:
    """``epochs`` and ``sched.warmup_epochs`` resolved where ``auto``, from the train images that
    will be trained on (after the scan has dropped unreadable ones), one line per choice."""
    notes = []
    if cfg.epochs == "auto":
        steps = steps_per_epoch(len(train.ids), cfg.batch_size, world_size, cfg.data.keep_last_batch)
        epochs = auto_epochs(steps)
        notes.append(
            f"epochs auto: {epochs} ({counted(steps, 'step')} per epoch; at least {AUTO_MIN_EPOCHS} epochs "
            f"and {AUTO_MIN_STEPS} steps)"
        )
        cfg = replace(cfg, epochs=epochs)
    if cfg.sched.warmup_epochs == "auto":
        warmup = round(AUTO_WARMUP_FRACTION * cfg.epochs, 2)
        notes.append(f"sched.warmup_epochs auto: {warmup:g} ({AUTO_WARMUP_FRACTION:.0%} of the epochs)")
        cfg = replace(cfg, sched=replace(cfg.sched, warmup_epochs=warmup))
    return cfg, notes


def resolve_auto_budget(cfg: Config, train: Split, world_size: int = 1) -> tuple[Config, list[str]]:
    """Every ``auto`` budget value of ``cfg`` (:func:`resolve_auto_size`, then
    :func:`resolve_auto_epochs`), and one line per choice saying how it was made."""
    cfg, size_notes = resolve_auto_size(cfg, train)
    cfg, epoch_notes = resolve_auto_epochs(cfg, train, world_size)
    return cfg, size_notes + epoch_notes
