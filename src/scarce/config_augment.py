"""The ``augment`` section of the run configuration (see :mod:`scarce.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from scarce.config_parse import opt


@dataclass
class LsbSwapConfig:
    enabled: bool = opt(False, "swap the low bits of every pixel with a partner image")
    bits: int = opt(2, "number of least-significant bits swapped (1..7)", range="[1, 7]")
    p: float = opt(0.5, "probability that an image is swapped", range="[0, 1]")
    partner: Literal["any", "same_class"] = opt("any", "partner image: any class or same_class (sample stage only)")
    stage: Literal["sample", "batch"] = opt("batch", "sample: in the dataset; batch: on the uint8 batch, on the device")
    placement: Literal["last", "before_randaugment"] = opt(
        "last", "last: after all uint8 transforms; before_randaugment: the paper's placement (needs stage sample)"
    )


@dataclass
class MixConfig:
    mixup_alpha: float = opt(
        0.0, "mixup: blend whole images, weight ~ Beta(alpha, alpha) (0: off; timm uses 0.8)", range="[0, inf)"
    )
    cutmix_alpha: float = opt(
        0.0,
        "CutMix: paste a patch of the partner image, about 1 - Beta(alpha, alpha) of its area (0: off; timm uses 1.0)",
        range="[0, inf)",
    )
    prob: float = opt(1.0, "probability that a batch is mixed", range="[0, 1]")
    switch_prob: float = opt(0.5, "with both alphas > 0: probability of CutMix rather than mixup", range="[0, 1]")


@dataclass
class AugmentConfig:
    crop: Literal["resized", "pad"] = opt(
        "resized",
        "train crop: resized (RandomResizedCrop, scale x ratio) or pad (the whole image "
        "at img_size, zero-padded by augment.pad px, random img_size crop: shifts only, "
        "the usual choice for 28-32 px images)",
    )
    pad: int | Literal["auto"] = opt(
        4,
        "crop pad: zero padding on each side, in px at img_size (the largest shift); auto: img_size / 16 (2 px at 32)",
        range="[0, 256]",
    )
    scale: list[float] = opt([0.35, 1.0], "crop resized: RandomResizedCrop area range", range="(0, 1]")
    ratio: list[float] = opt([0.75, 1.3333333], "crop resized: RandomResizedCrop aspect-ratio range", range="(0, inf)")
    hflip: float = opt(0.5, "horizontal flip probability", range="[0, 1]")
    fill: int | Literal["edge", "mean"] = opt(
        "edge",
        "colour of the pixels a padded shift or a RandAugment rotation, shear "
        "or translation uncovers: edge (median border colour of the train images: "
        "black on Fashion-MNIST), mean (the normalisation mean, timm's choice) or a "
        "grey level",
        range="[0, 255]",
    )
    randaugment: str | None = opt(None, "timm RandAugment string, e.g. rand-m9-mstd0.5 (null: off)")
    re_prob: float = opt(0.0, "random erasing probability (applied after normalisation, on the device)", range="[0, 1]")
    re_mode: Literal["const", "rand", "pixel"] = opt("pixel", "random erasing fill")
    lsb_swap: LsbSwapConfig = field(default_factory=LsbSwapConfig)
    mix: MixConfig = field(default_factory=MixConfig)  # per batch, on the device; the loss is mixed, not the labels
