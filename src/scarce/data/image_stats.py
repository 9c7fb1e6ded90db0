"""Statistics of the train images: the colour that geometric augmentations paint where they
uncover pixels, and the per-channel mean and std inputs can be normalised with.

A padded shift or a RandAugment rotation uncovers a border; painting it with the ImageNet mean
(timm's choice) draws a grey frame around Fashion-MNIST's black background that no test image
has. ``augment.fill: edge`` paints it with the train images' own border colour instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from scarce.data.datasets import ImageDataset, Split, spread_picks
from scarce.errors import UserError

# Enough images for a stable median border colour; reading them costs well under a second.
EDGE_SAMPLE_IMAGES = 64


def border_pixels(image: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W]`` or ``[H, W, C]`` -> its outermost ring of pixels, ``[2H + 2W - 4, C]``."""
    image = image[..., None] if image.ndim == 2 else image
    ring = [image[0], image[-1], image[1:-1, 0], image[1:-1, -1]]
    return np.concatenate(ring, axis=0)


# Enough images for the mean and std to 3 decimals on typical data.
STATS_SAMPLE_IMAGES = 512


def sample_images(split: Split, mode: str, max_images: int) -> Iterator[np.ndarray]:
    """Up to ``max_images`` images of ``split``, evenly spaced (a deterministic pick), as uint8
    ``[H, W, C]`` arrays in ``mode``; unreadable ones are passed over (the up-front scan reports them)."""
    dataset = ImageDataset(split, mode)
    for i in spread_picks(len(dataset), max_images):
        try:
            image = np.asarray(dataset.load(int(i)))
        except UserError:
            continue
        yield image[..., None] if image.ndim == 2 else image


def edge_colour(split: Split, mode: str, max_images: int = EDGE_SAMPLE_IMAGES) -> list[int]:
    """Per-channel median of the border pixels of up to ``max_images`` images of ``split``,
    as ints in [0, 255]."""
    rings = [border_pixels(im) for im in sample_images(split, mode, max_images)]
    if not rings:  # nothing readable: black, and the up-front scan says why
        return [0] * (1 if mode == "L" else 3)
    return [int(v) for v in np.median(np.concatenate(rings, axis=0), axis=0).round()]


def pixel_mean_std(split: Split, mode: str, max_images: int = STATS_SAMPLE_IMAGES) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the pixels (in [0, 1]) of up to ``max_images`` images of
    ``split``, every pixel weighted equally whatever its image's size (running sums: one image
    in memory at a time)."""
    count, total, squares = 0, 0.0, 0.0
    for image in sample_images(split, mode, max_images):
        pixels = image.reshape(-1, image.shape[-1]).astype(np.float64) / 255.0
        count, total, squares = count + len(pixels), total + pixels.sum(0), squares + (pixels**2).sum(0)
    if count == 0:
        raise UserError(f"data.normalize=train: none of the {len(split.ids)} train images could be read")
    mean = total / count
    std = np.maximum(np.sqrt(np.maximum(squares / count - mean**2, 0.0)), 1e-3)  # a constant channel: no 1/0
    return [round(float(m), 4) for m in mean], [round(float(v), 4) for v in std]


def mean_fill(mean: list[float]) -> list[int]:
    """The normalisation mean (in [0, 1]) as a fill colour: one int in [0, 255] per channel."""
    return [round(255 * m) for m in mean]


def resolve_fill(fill: int | str, split: Split, mode: str, mean: list[float]) -> list[int]:
    """``augment.fill`` as one int per channel: ``edge`` (the train images' border colour),
    ``mean`` (the normalisation mean) or a grey level."""
    channels = 1 if mode == "L" else 3
    if fill == "edge":
        return edge_colour(split, mode)
    if fill == "mean":
        return mean_fill(mean)
    return [int(fill)] * channels
