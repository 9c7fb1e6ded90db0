"""Statistics of the train images: the colour that geometric augmentations paint where they
uncover pixels, and the per-channel mean and std inputs can be normalised with.

A padded shift or a RandAugment rotation uncovers a border; painting it with the ImageNet mean
(timm's choice) draws a grey frame around Fashion-MNIST's black background that no test image
has. ``augment.fill: edge`` paints it with the train images' own border colour instead.
"""

from __future__ import annotations

import numpy as np

from scarce.data.datasets import ImageDataset, Split

# Enough images for a stable median border colour; reading them costs well under a second.
EDGE_SAMPLE_IMAGES = 64


def border_pixels(image: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W]`` or ``[H, W, C]`` -> its outermost ring of pixels, ``[2H + 2W - 4, C]``."""
    image = image[..., None] if image.ndim == 2 else image
    ring = [image[0], image[-1], image[1:-1, 0], image[1:-1, -1]]
    return np.concatenate(ring, axis=0)


# Enough images for the mean and std to 3 decimals on typical data.
STATS_SAMPLE_IMAGES = 512


def sample_images(split: Split, mode: str, max_images: int) -> list[np.ndarray]:
    """Up to ``max_images`` images of ``split``, evenly spaced (a deterministic pick), as uint8
    ``[H, W, C]`` arrays in ``mode``."""
    dataset = ImageDataset(split, mode)
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(max_images, len(dataset))).round().astype(int))
    images = [np.asarray(dataset.load(int(i))) for i in picks]
    return [im[..., None] if im.ndim == 2 else im for im in images]


def edge_colour(split: Split, mode: str, max_images: int = EDGE_SAMPLE_IMAGES) -> list[int]:
    """Per-channel median of the border pixels of up to ``max_images`` images of ``split``,
    as ints in [0, 255]."""
    rings = [border_pixels(im) for im in sample_images(split, mode, max_images)]
    return [int(v) for v in np.median(np.concatenate(rings, axis=0), axis=0).round()]


def pixel_mean_std(split: Split, mode: str, max_images: int = STATS_SAMPLE_IMAGES) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the pixels (in [0, 1]) of up to ``max_images`` images of
    ``split``, every pixel weighted equally whatever its image's size."""
    pixels = np.concatenate([im.reshape(-1, im.shape[-1]) for im in sample_images(split, mode, max_images)])
    pixels = pixels.astype(np.float64) / 255.0
    std = np.maximum(pixels.std(axis=0), 1e-3)  # a constant channel would divide by zero
    return [round(float(m), 4) for m in pixels.mean(axis=0)], [round(float(s), 4) for s in std]


def resolve_fill(fill: int | str, split: Split, mode: str, mean: list[float]) -> list[int]:
    """``augment.fill`` as one int per channel: ``edge`` (the train images' border colour),
    ``mean`` (the normalisation mean) or a grey level."""
    channels = 1 if mode == "L" else 3
    if fill == "edge":
        return edge_colour(split, mode)
    if fill == "mean":
        return [round(255 * m) for m in mean]
    return [int(fill)] * channels
