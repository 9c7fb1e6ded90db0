"""The ``data`` section of the run configuration (see :mod:`scarce.config`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from scarce.config_parse import opt
from scarce.errors import UserError


@dataclass
class DataConfig:
    name: str | None = opt(
        "demo",
        "built-in dataset (demo, fashion-mnist), image-folder root with train/val/test, or null: only the "
        "folders data.train / data.val / data.test (what --train without --data saves)",
    )
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
    split_seed: int = opt(
        0, "seed of fashion-mnist's per-class sampling and of the val split taken from a train folder", range="[0, inf)"
    )
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
        "data-loading worker processes (0: in the main process); auto: on a CPU 0 for in-memory "
        "images, else the cores the compute threads leave; on a GPU this process's cores less one (max 8)",
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
        "fit in 2 GB (train at 1.15 x the evaluation resize, or img_size with augment.crop=pad)",
    )
    skip_bad_images: bool = opt(False, "skip unreadable images (counted, listed in the run dir) instead of failing")
    bit_depth: int | None = opt(
        None,
        "16-bit (integer) images: their sensor's bit depth, 2^bit_depth - 1 read as white (e.g. 12 for "
        "12-bit data in 16-bit PNGs); null: per image, the smallest of 8/10/12/14/16 bits that holds its "
        "largest value (a dim image then reads brighter)",
        range="[1, 16]",
    )


def folders_only(data: DataConfig) -> DataConfig:
    """``data`` with the demo's name dropped when a train folder is given: the demo is only the
    default data, so ``--train DIR`` alone reads no dataset (config.yaml then says so, not ``demo``)."""
    return replace(data, name=None) if data.name == "demo" and data.train is not None else data


def data_label(data: DataConfig) -> str:
    """How messages and prediction files name the data: its name or root, else its train folder."""
    name = folders_only(data).name
    return name if name is not None else str(data.train)


def check_data_source(data: DataConfig) -> None:
    if data.name is None and data.train is None:
        raise UserError("data.name is null and no data.train folder is given: give --data DATASET or --train FOLDER")


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
                f"not to image folder '{data_label(data)}'; {instead}, or unset it with data.{key}=null"
            )
