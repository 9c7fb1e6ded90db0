"""uint8 image pipelines: PIL in, uint8 Tensor ``[C, H, W]`` out.

Normalisation and random erasing are left to the device (see
``scarce.engine.batch``) so the last uint8 step of the pipeline is a real,
stated point where LSB Swap can act and its low bits reach the network.
Train order: random crop (resized, or padded shift) -> flip -> [LSB Swap, paper's placement]
-> RandAugment -> to uint8 tensor -> [LSB Swap, placement ``last``].
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms.functional import pil_to_tensor

from scarce.config import AugmentConfig, DataConfig
from scarce.errors import UserError

INTERPOLATION = T.InterpolationMode.BILINEAR


def pil_fill(fill: list[int]) -> int | tuple[int, ...]:
    """One int per channel -> what PIL and torchvision take as a fill: an int for one channel."""
    return tuple(fill) if len(fill) > 1 else fill[0]


def create_randaugment(config_str: str, img_size: int, fill: list[int]):
    """timm RandAugment from its config string (e.g. ``rand-m9-mstd0.5``); ``fill``: the colour of
    uncovered pixels, one int per channel."""
    from timm.data.auto_augment import rand_augment_transform

    hparams = {"translate_const": int(img_size * 0.45), "img_mean": pil_fill(fill)}
    try:
        return rand_augment_transform(config_str, hparams)
    except (AssertionError, ValueError, KeyError, IndexError) as exc:
        raise UserError(
            f"augment.randaugment '{config_str}': not a timm RandAugment string like rand-m9-mstd0.5 ({exc})"
        ) from None


class FitToSize:
    """PIL image -> ``size`` x ``size``: shorter side resized to ``resize_to``, then center-cropped;
    with ``pad_small``, an image no larger than ``size`` is zero-padded around it instead (centred:
    torchvision's center crop pads), keeping its pixels."""

    def __init__(self, size: int, resize_to: int | None = None, pad_small: bool = False):
        self.size, self.resize_to, self.pad_small = size, resize_to or size, pad_small

    def __call__(self, img: Image.Image) -> Image.Image:
        if not (self.pad_small and max(img.size) <= self.size):
            img = T.functional.resize(img, self.resize_to, interpolation=INTERPOLATION, antialias=True)
        return T.functional.center_crop(img, [self.size, self.size])


def train_crop(img_size: int, augment: AugmentConfig, pad_small: bool = False, fill: list[int] | None = None) -> list:
    """The random crop of ``augment.crop``: a RandomResizedCrop, or the whole image shifted by padding
    (uncovered pixels painted ``fill``, one int per channel; default black)."""
    if augment.crop == "pad":
        # the whole image, as evaluation sees it with crop_pct 1, moved by up to `pad` px (CIFAR-style)
        colour = pil_fill(fill or [0])
        return [FitToSize(img_size, pad_small=pad_small), T.RandomCrop(img_size, padding=augment.pad, fill=colour)]
    return [
        T.RandomResizedCrop(
            img_size,
            scale=tuple(augment.scale),
            ratio=tuple(augment.ratio),
            interpolation=INTERPOLATION,
            antialias=True,
        )
    ]


class TrainTransform:
    """Random training view of image ``index`` of a dataset, as uint8 ``[C, H, W]``.

    Called as ``transform(dataset, index, img)``; the dataset is passed so that the
    sample stage of LSB Swap can draw a partner image. Randomness comes from the
    worker's torch / random / numpy generators, which the loader seeds.
    """

    def __init__(self, data: DataConfig, augment: AugmentConfig, fill: list[int]):
        crop = train_crop(data.img_size, augment, pad_small=data.small_images == "pad", fill=fill)
        self.geometric = T.Compose([*crop, T.RandomHorizontalFlip(augment.hflip)])
        self.randaugment = create_randaugment(augment.randaugment, data.img_size, fill) if augment.randaugment else None
        swap = augment.lsb_swap
        self.swap = swap if swap.enabled and swap.stage == "sample" else None
        self._by_class: dict[int, list[int]] | None = None

    def _partner_index(self, dataset, index: int) -> int:
        if self.swap.partner == "same_class":
            if self._by_class is None:
                self._by_class = {}
                for i, t in enumerate(dataset.targets):
                    self._by_class.setdefault(t, []).append(i)
            pool = self._by_class[dataset.targets[index]]
        else:
            pool = range(len(dataset))
        if len(pool) < 2:
            return index
        pick = int(torch.randint(len(pool) - 1, ()).item())
        partner = pool[pick]
        return pool[-1] if partner == index else partner  # never the image itself

    def _maybe_randaugment(self, img: Image.Image) -> Image.Image:
        return self.randaugment(img) if self.randaugment is not None else img

    def __call__(self, dataset, index: int, img: Image.Image) -> torch.Tensor:
        img = self.geometric(img)
        partner = None
        if self.swap is not None and float(torch.rand(())) < self.swap.p:
            partner = self.geometric(dataset.load(self._partner_index(dataset, index)))
        if partner is not None and self.swap.placement == "before_randaugment":
            from scarce.augment import lsb_swap

            img = T.functional.to_pil_image(lsb_swap(pil_to_tensor(img), pil_to_tensor(partner), self.swap.bits))
            partner = None
        out = pil_to_tensor(self._maybe_randaugment(img))
        if partner is not None:
            from scarce.augment import lsb_swap

            out = lsb_swap(out, pil_to_tensor(self._maybe_randaugment(partner)), self.swap.bits)
        return out


class EvalTransform:
    """Deterministic evaluation view: resize to ``img_size / crop_pct``, center crop."""

    def __init__(self, data: DataConfig):
        self.pipeline = FitToSize(
            data.img_size, int(round(data.img_size / data.crop_pct)), pad_small=data.small_images == "pad"
        )

    def __call__(self, dataset, index: int, img: Image.Image) -> torch.Tensor:
        return pil_to_tensor(self.pipeline(img))
