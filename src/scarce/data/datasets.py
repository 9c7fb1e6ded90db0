"""Datasets that yield ``(uint8 Tensor [C, H, W], label)``.

Two sources share one class: image files on disk (an image folder) and an
in-memory uint8 array (Fashion-MNIST's IDX files). Both go through the same
mode conversion and transform, so every technique sees identical data.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps

from scarce.data.seeding import sample_seed, seeded_rngs
from scarce.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def scan_image_folder(root: str | os.PathLike) -> tuple[list[tuple[str, int]], list[str]]:
    """``root/<class>/**/<image>`` -> ([(relative path, class index)], sorted class names).

    Symlinked folders are followed once: a symlink loop cannot make the scan spin.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder {root}: not found (expected <root>/<class>/<image> folders)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"data folder {root}: no class folders (expected <root>/<class>/<image>)")
    samples = []
    for index, name in enumerate(classes):
        found = _images_under(root / name)
        if not found:
            raise UserError(f"data folder {root}: class folder '{name}' has no images ({', '.join(IMAGE_EXTENSIONS)})")
        samples += [(str(p.relative_to(root)), index) for p in found]
    return samples, classes


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _files_under(folder: Path, images: bool) -> list[Path]:
    """The image files (``images``) or the other files under ``folder``, hidden folders left out."""
    seen: set[str] = set()
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if _is_image_name(f) == images]
    return found


def _images_under(folder: Path) -> list[Path]:
    return _files_under(folder, images=True)


def skipped_files(root: str | os.PathLike, classes: Sequence[str]) -> list[str]:
    """Files under the class folders of ``root`` that the scan does not read as images (other
    extensions, hidden names), relative to ``root``: ``scarce data check`` lists them."""
    return [str(p.relative_to(root)) for name in classes for p in _files_under(Path(root) / name, images=False)]


def nested_folders(root: str | os.PathLike, classes: Sequence[str]) -> dict[str, list[str]]:
    """Per class folder of ``root``, its sub-folders that hold images: their images are read as that
    class, which is wanted for grouped photos but wrong when the sub-folders are the real classes
    (a folder one level too high): ``scarce data check`` lists them."""
    found = {}
    for name in classes:
        subs = sorted(p for p in (Path(root) / name).iterdir() if p.is_dir() and not p.name.startswith("."))
        with_images = [p.name for p in subs if _images_under(p)]
        if with_images:
            found[name] = with_images
    return found


def safe_join(root: str | os.PathLike, rel: str, what: str = "path") -> Path:
    """``root / rel`` for a relative path read from a file (manifest, CSV) that stays inside
    ``root``; an absolute path or one whose ``..`` climbs out raises :class:`UserError`.

    The check is lexical: symlinks inside ``root`` (``data subset --link sym``) are the data
    owner's and are followed as usual.
    """
    norm = os.path.normpath(str(rel))
    if not rel or "\0" in rel or os.path.isabs(norm) or norm == ".." or norm.startswith(".." + os.sep):
        raise UserError(f"{what}: path {rel!r} escapes the data root {root} (expected a relative path inside it)")
    return Path(root) / norm


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def is_gray_image(img: Image.Image) -> bool:
    """A grayscale mode, or a palette whose colours are all grays."""
    if img.mode == "P":
        palette = np.asarray(img.getpalette() or [], dtype=np.int32).reshape(-1, 3)
        return bool(len(palette)) and bool((palette == palette[:, :1]).all())
    return img.mode in GRAY_MODES


# Full-scale values of the usual bit depths: 8, 10, 12 and 14-bit sensors store in 16-bit PNGs.
BIT_DEPTH_PEAKS = (255.0, 1023.0, 4095.0, 16383.0, 65535.0)


def full_scale_of(bit_depth: int | None) -> float | None:
    """``data.bit_depth`` as the value that maps to 255 (None: decided per image by :func:`value_peak`)."""
    return None if bit_depth is None else float(2**bit_depth - 1)


def value_peak(max_value: float, is_float: bool) -> float:
    """The full-scale value an image's pixels were stored against, from its largest value.

    Float images with values up to 1 are taken as [0, 1]; otherwise the smallest usual bit
    depth that holds ``max_value`` (a 12-bit image in a 16-bit PNG scales by 4095, not 65535,
    so it does not turn dark). An image that never reaches its depth's top band reads
    brighter: per-image detection cannot tell a dim 12-bit image from a 10-bit one
    (``data.bit_depth`` states the depth for a whole dataset).
    """
    if is_float and max_value <= 1.0:
        return 1.0
    return next((p for p in BIT_DEPTH_PEAKS if max_value <= p), max(max_value, 1.0))


@functools.cache
def _lab_to_srgb() -> ImageCms.ImageCmsTransform:
    return ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")


def to_mode(img: Image.Image, mode: str, full_scale: float | None = None) -> Image.Image:
    """Convert any PIL mode to 'L' or 'RGB'.

    Deep and float images are scaled to 8 bits: integer ones ``full_scale`` -> 255 (clipped
    above it), or by :func:`value_peak` when None, as float ones always are (not clipped);
    transparency is composited on white, the usual background of product and scanned
    images; CIE L*a*b* goes to sRGB through LittleCMS; palette, CMYK and other modes go
    through Pillow's own conversion.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        arr = np.nan_to_num(arr, nan=0.0, posinf=float(finite.max()) if finite.size else 0.0, neginf=0.0)
        is_float = img.mode == "F"  # float images keep the per-image rule ([0, 1], else a bit depth)
        peak = (
            full_scale
            if full_scale and not is_float
            else value_peak(float(finite.max()) if finite.size else 0.0, is_float)
        )
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "LAB":  # CIE L*a*b* (TIFF, JPEG): Pillow's convert() has no path to RGB
        img = ImageCms.applyTransform(img, _lab_to_srgb())
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img if img.mode == mode else img.convert(mode)


def upright_in_mode(img: Image.Image, mode: str, full_scale: float | None = None) -> Image.Image:
    """``img`` turned upright per its EXIF orientation (cameras store rotated pixels plus a tag),
    converted to ``mode`` (deep images scaled by ``full_scale``: :func:`to_mode`): what a model
    sees of an image, whether it came as a file or as a PIL image."""
    return to_mode(ImageOps.exif_transpose(img), mode, full_scale)


def read_image(path: str | os.PathLike, mode: str, full_scale: float | None = None) -> Image.Image:
    """Open and fully decode ``path`` (so truncation is caught here): :func:`upright_in_mode`."""
    try:
        with Image.open(path) as img:
            img.load()
            return upright_in_mode(img, mode, full_scale)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise UserError(f"image {path}: cannot be read ({type(exc).__name__}: {exc})") from None


def spread_picks(n: int, k: int) -> list[int]:
    """Up to ``k`` evenly spaced indices of ``range(n)``, first and last included: a deterministic
    sample that reaches every class of a split sorted by class."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int)).tolist() if n else []


@dataclass
class Split:
    """What a dataset split is made of, before any transform."""

    ids: list[str]  # file paths relative to the root, or 'train/123' indices
    targets: list[int]
    classes: list[str]
    root: str | None = None  # image files: root that ids are relative to
    array: np.ndarray | None = None  # in-memory: uint8 [N, H, W] or [N, H, W, C]
    cache: list[np.ndarray] | None = None  # image files decoded once (data.cache): uint8 [H, W(, C)] each
    from_train: bool = False  # a val split taken from the train folder (data.val_fraction)
    colour_images: int = 0  # image files the up-front scan found in colour (channels=auto decides on all)
    full_scale: float | None = None  # 16-bit / float files: the value read as 255 (data.bit_depth; None: per image)


class ImageDataset(torch.utils.data.Dataset):
    """A :class:`Split` read as PIL images in ``mode`` and passed through ``transform``.

    ``transform(dataset, index, img)`` returns uint8 ``[C, H, W]``; it receives the dataset
    and index so sample-stage augmentations (LSB Swap's partner) can draw other images.
    An item is an index, or ``(epoch, index[, draw])`` (from ``EpochSampler``): then the random
    generators are seeded from ``(self.seed, epoch, index)`` for this sample alone (its ``draw``-th
    repeat in the epoch from ``index + draw * len(self)``: another view).
    ``unreadable_hint`` ends the error of an image that cannot be read (what the caller's user can do).
    """

    def __init__(self, split: Split, mode: str, transform: Callable | None = None, seed: int = 0):
        self.split = split
        self.mode = mode
        self.transform = transform
        self.seed = seed
        self.unreadable_hint = ""

    @property
    def classes(self) -> list[str]:
        return self.split.classes

    @property
    def targets(self) -> list[int]:
        return self.split.targets

    @property
    def ids(self) -> list[str]:
        return self.split.ids

    def __len__(self) -> int:
        return len(self.split.ids)

    def load(self, index: int) -> Image.Image:
        if self.split.cache is not None:
            return to_mode(Image.fromarray(self.split.cache[index]), self.mode)
        if self.split.array is not None:
            return to_mode(Image.fromarray(self.split.array[index]), self.mode)
        try:
            return read_image(Path(self.split.root) / self.split.ids[index], self.mode, self.split.full_scale)
        except UserError as exc:
            raise UserError(f"{exc}{self.unreadable_hint}") from None

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        if isinstance(item, tuple):
            epoch, index, *draw = item
            key = index + (draw[0] * len(self) if draw else 0)  # draw 0: the seed of (epoch, index), as before
            with seeded_rngs(sample_seed(self.seed, epoch, key)):
                return self[index]
        index = item
        img = self.load(index)
        if self.transform is None:
            from torchvision.transforms.functional import pil_to_tensor

            return pil_to_tensor(img), self.split.targets[index]
        return self.transform(self, index, img), self.split.targets[index]


def folder_split(root: str | os.PathLike, classes: Sequence[str] | None = None) -> Split:
    """An image folder as a :class:`Split`; ``classes`` (from train) must match its folders."""
    samples, found = scan_image_folder(root)
    if classes is not None and list(found) != list(classes):
        missing = sorted(set(classes) - set(found))
        extra = sorted(set(found) - set(classes))
        raise UserError(
            f"data folder {root}: classes differ from the training set "
            f"(missing: {missing or 'none'}, unknown: {extra or 'none'})"
        )
    return Split(ids=[s[0] for s in samples], targets=[s[1] for s in samples], classes=list(found), root=str(root))
