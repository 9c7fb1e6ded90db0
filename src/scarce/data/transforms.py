"""uint8 image pipelines: PIL in, uint8 Tensor ``[C, H, W]`` out.

Normalisation and random erasing are left to the device (see
``scarce.engine.batch``) so the last uint8 step of the pipeline is a real,
stated point where LSB Swap can act and its low bits reach the network.
Train order: random crop (resized, or padded shift) -> flip -> [LSB Swap, paper's placement]
-> RandAugment -> to uint8 tensor -> [LSB Swap, placement ``last``].
"""

from __future__ import annotations

import re

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


#: The sections of a timm RandAugment string after ``rand`` (timm 1.0's ``rand_augment_transform``),
#: as the error lists them. timm skips a section it cannot parse (``rand-m9-xx`` = ``rand-m9``)
#: and clips the magnitude to ``mmax`` (default 10), so both are checked here instead.
RANDAUGMENT_SECTIONS = (
    "m<magnitude 0-10, up to mmax>, n<ops per image >= 1>, p<op probability 0-1>, mstd<magnitude std >= 0>, "
    "mmax<1-30>, inc<0|1>, tweights|t3a|t3aw"
)
_RA_NUMBER = re.compile(r"(mstd|mmax|inc|m|n|p)(\d+(?:\.\d+)?)")
_RA_INTEGER_KEYS = ("mmax", "inc", "m", "n")
_RA_OP_SETS = ("weights", "3a", "3aw")  # any other t<name> is timm's default set, silently
_RA_MAX_MAGNITUDE = 30  # torchvision's bins and Google's RandAugment stop at 30; ops still make sense there


def randaugment_sections(config_str: str) -> dict[str, float | str]:
    """The sections of a timm RandAugment string (``rand-m9-mstd0.5`` -> ``{"m": 9, "mstd": 0.5}``),
    refused with a one-line UserError naming ``augment.randaugment`` unless timm reads each one as
    written: ``rand`` first, known sections with numbers of the right kind and range, none twice."""
    where = f"augment.randaugment '{config_str}'"
    first, *rest = config_str.split("-")
    if first != "rand":
        raise UserError(
            f"{where}: a timm RandAugment string starts with 'rand' (like rand-m9-mstd0.5), got '{first}'; "
            f"sections after it: {RANDAUGMENT_SECTIONS}"
        )
    sections: dict[str, float | str] = {}
    for part in rest:
        match = _RA_NUMBER.fullmatch(part)
        if part[:1] == "t" and part[1:] in _RA_OP_SETS:
            key, value = "t", part[1:]
        elif match and not (match[1] in _RA_INTEGER_KEYS and "." in match[2]):  # timm int()s these
            key, value = match[1], float(match[2]) if match[1] in ("p", "mstd") else int(match[2])
        else:
            raise UserError(f"{where}: section '{part}' is not one timm reads; valid: {RANDAUGMENT_SECTIONS}")
        if key in sections:
            raise UserError(f"{where}: section {key} is given twice")
        sections[key] = value
    _check_randaugment_ranges(where, sections)
    return sections


def _check_randaugment_ranges(where: str, sections: dict[str, float | str]) -> None:
    bound = sections.get("mmax", 10)
    limits = (("mmax", 1, _RA_MAX_MAGNITUDE), ("n", 1, None), ("p", 0, 1), ("inc", 0, 1))
    for key, low, high in limits:
        value = sections.get(key)
        if value is not None and (value < low or (high is not None and value > high)):
            valid = f"{key} {low}-{high}" if high is not None else f"{key} >= {low}"
            raise UserError(f"{where}: section {key}{value:g} out of range ({valid}); valid: {RANDAUGMENT_SECTIONS}")
    if sections.get("m", 0) > bound:
        raise UserError(
            f"{where}: magnitude m{sections['m']} is above {bound}, where timm clips it; use m0-m{bound}"
            + (f", or up to m{_RA_MAX_MAGNITUDE} with mmax{_RA_MAX_MAGNITUDE}" if "mmax" not in sections else "")
        )


def create_randaugment(config_str: str, img_size: int, fill: list[int]):
    """timm RandAugment from its config string (e.g. ``rand-m9-mstd0.5``), checked first by
    :func:`randaugment_sections`; ``fill``: the colour of uncovered pixels, one int per channel."""
    from timm.data.auto_augment import rand_augment_transform

    sections = randaugment_sections(config_str)
    hparams = {"translate_const": int(img_size * 0.45), "img_mean": pil_fill(fill)}
    transform = rand_augment_transform(config_str, hparams)
    # weighted op sets draw without replacement: more ops per image than the set has fails in a worker
    if transform.choice_weights is not None and sections.get("n", 2) > len(transform.ops):
        raise UserError(
            f"augment.randaugment '{config_str}': n{sections['n']} is more ops per image than "
            f"t{sections['t']} has ({len(transform.ops)})"
        )
    return transform


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

    def _partner_index(self, dataset, index: int) -> int | None:
        """Another image of the pool (its class with ``same_class``), None where there is none."""
        if self.swap.partner == "same_class":
            if self._by_class is None:
                self._by_class = {}
                for i, t in enumerate(dataset.targets):
                    self._by_class.setdefault(t, []).append(i)
            pool = self._by_class[dataset.targets[index]]
        else:
            pool = range(len(dataset))
        if len(pool) < 2:  # a class of one image: no swap (not with another crop of itself)
            return None
        pick = int(torch.randint(len(pool) - 1, ()).item())
        partner = pool[pick]
        return pool[-1] if partner == index else partner  # never the image itself

    def _maybe_randaugment(self, img: Image.Image) -> Image.Image:
        return self.randaugment(img) if self.randaugment is not None else img

    def __call__(self, dataset, index: int, img: Image.Image) -> torch.Tensor:
        img = self.geometric(img)
        partner = None
        if self.swap is not None and float(torch.rand(())) < self.swap.p:
            other = self._partner_index(dataset, index)
            partner = None if other is None else self.geometric(dataset.load(other))
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
