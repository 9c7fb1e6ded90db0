"""``scarce augment preview``: training images as the network receives them.

The views come from the real pipeline, not a re-implementation: the recipe's
train dataset (``build_dataset``: crop, flip, RandAugment, sample-stage LSB Swap, on
uint8) then the device step (``BatchPreprocessor``: batch-stage LSB Swap, random
erasing after normalisation; then the train step's mixup / CutMix, which pairs the previewed
images with each other), un-normalised for display. A second panel shows what
LSB Swap does to the bits: it is invisible in the images, so the low bit-planes of
an image, its partner and the swapped result are drawn one plane at a time.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from scarce.augment.mix import describe_mix
from scarce.config import Config, data_label
from scarce.io import atomic_path
from scarce.report.fonts import figure_labels
from scarce.report.plots import new_figure

Image = np.ndarray | tuple[np.ndarray, str]


def to_display(x: torch.Tensor) -> np.ndarray:
    """uint8 ``[C, H, W]`` -> ``[H, W]`` (one channel) or ``[H, W, 3]`` numpy for imshow."""
    arr = x.detach().cpu().numpy()
    return arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))


def image_grid_figure(
    panels: Sequence[tuple[str, Sequence[tuple[str, Sequence[np.ndarray]]]]], cell: float = 1.3
) -> Figure:
    """Panels of labelled image rows: ``[(title, [(row label, [uint8 image, ...]), ...]), ...]``.

    An image may be an ``(image, caption)`` pair; the caption is drawn above it.
    Images are uint8 ``[H, W]`` (gray) or ``[H, W, 3]``, drawn at their value (0..255)
    with nearest-neighbour resampling so single pixels and bit-planes stay visible.
    """
    ncols = max(len(images) for _, rows in panels for _, images in rows)
    heights = [len(rows) + 0.5 for _, rows in panels]
    width = cell * ncols + 1.8
    fig = new_figure(width, cell * sum(heights))
    subfigs = np.atleast_1d(fig.subfigures(len(panels), 1, height_ratios=heights))
    for sub, (title, rows) in zip(subfigs, panels):
        axes = np.asarray(sub.subplots(len(rows), ncols, squeeze=False))
        for r, (label, images) in enumerate(rows):
            for c, ax in enumerate(axes[r]):
                ax.set_xticks([])
                ax.set_yticks([])
                if c >= len(images):
                    ax.set_axis_off()
                    continue
                img, caption = images[c] if isinstance(images[c], tuple) else (images[c], None)
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
                if caption:  # drawn with a fallback font where the default lacks a character
                    ax.set_title(caption, fontsize=7, fontfamily=figure_labels([caption])[1])
            axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        sub.suptitle(textwrap.fill(title, int(width * 12)), fontsize=10)  # ~12 characters per inch at 10 pt
    return fig


def unnormalise(x: torch.Tensor, preprocess) -> torch.Tensor:
    """Float ``[B, C, H, W]`` from ``BatchPreprocessor`` back to uint8 ``[B, C, H, W]``."""
    return (x * preprocess.std + preprocess.mean).round().clamp(0, 255).to(torch.uint8).cpu()


def bit_plane(x: torch.Tensor, k: int) -> torch.Tensor:
    """Bit ``k`` (0 = least significant) of uint8 ``x`` as 0/255, same shape."""
    return ((x >> k) & 1) * 255


def lsb_panel(a: torch.Tensor, b: torch.Tensor, bits: int) -> list[tuple[str, list[Image]]]:
    """Rows for uint8 ``[C, H, W]`` images ``a`` (kept) and ``b`` (partner): the images, the
    swapped result and its amplified difference, then each of the ``bits`` low bit-planes."""
    from scarce.augment import lsb_swap

    swapped = lsb_swap(a, b, bits=bits)
    mask = (1 << bits) - 1
    diff = (swapped.int() - a.int()).abs() * (255 // mask)
    rows: list[tuple[str, list[Image]]] = [
        (
            "images",
            [
                (to_display(a), "a (keeps label)"),
                (to_display(b), "b (partner)"),
                (to_display(swapped), "a after swap"),
                (to_display(diff.to(torch.uint8)), f"|after - a| x{255 // mask}"),
            ],
        )
    ]
    for k in range(bits):
        rows.append(
            (
                f"bit-plane {k}",
                [
                    (to_display(bit_plane(a, k)), f"a, bit {k}"),
                    (to_display(bit_plane(b, k)), f"b, bit {k}"),
                    (to_display(bit_plane(swapped, k)), f"after, bit {k} (= b's)"),
                ],
            )
        )
    return rows


def _pipeline_title(cfg: Config) -> str:
    a, s = cfg.augment, cfg.augment.lsb_swap
    swap = f"LSB Swap {s.bits} bits p={s.p:g} ({s.stage} stage, {s.placement})" if s.enabled else "LSB Swap off"
    crop = f"padded shifts of up to {a.pad} px" if a.crop == "pad" else f"resized crops, scale {a.scale}"
    mix = describe_mix(a.mix.mixup_alpha, a.mix.cutmix_alpha, a.mix.prob)
    return (
        f"training pipeline on '{data_label(cfg.data)}' at {cfg.data.img_size}px: {crop}, "
        f"hflip {a.hflip:g}, RandAugment {a.randaugment or 'off'}, random erasing {a.re_prob:g}, {swap}"
        + (f", {mix}" if mix else "")
    )


def preview_panels(
    cfg: Config, n_images: int = 8, views: int = 3, seed: int = 0, split: str = "train"
) -> list[tuple[str, list[tuple[str, list[Image]]]]]:
    """Panels for :func:`image_grid_figure`: original + ``views`` seeded training views of
    ``n_images`` images (columns), then the LSB Swap bit-plane panel."""
    from scarce.data import build_data, build_dataset
    from scarce.data.seeding import seed_everything
    from scarce.engine.auto_budget import resolve_auto_budget
    from scarce.engine.batch import BatchPreprocessor
    from scarce.engine.factories import build_mixer

    bundle = build_data(cfg.data)
    cfg = resolve_auto_budget(cfg, bundle.splits["train"])[0]  # data.img_size: auto
    train_set = build_dataset(bundle, split, cfg.data, cfg.augment)
    eval_set = build_dataset(bundle, split, cfg.data, None)
    n_images = min(n_images, len(train_set))
    picks = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed))[:n_images].tolist()
    seed_everything(seed)  # the per-image transforms draw from the global torch/random/numpy generators
    preprocess = BatchPreprocessor(bundle.mean, bundle.std, torch.device("cpu"), cfg.augment)
    preprocess.seed(seed)
    mixer = build_mixer(cfg.augment.mix)
    if mixer is not None:
        mixer.seed(seed)
    originals = torch.stack([eval_set[i][0] for i in picks])
    names = figure_labels(train_set.classes)[0]  # '#i' for a name no installed font can draw
    rows: list[tuple[str, list[Image]]] = [
        ("original", [(to_display(x), names[train_set.targets[i]]) for x, i in zip(originals, picks)])
    ]
    last_uint8 = originals
    for v in range(views):
        last_uint8 = torch.stack([train_set[i][0] for i in picks])
        x, label = preprocess(last_uint8, train=True), f"view {v + 1}"
        if mixer is not None:
            x, mix = mixer(x)
            label += "" if mix.lam == 1 else f" ({'CutMix' if mix.box else 'mixup'}, {mix.lam:.2f} own label)"
        rows.append((label, [to_display(im) for im in unnormalise(x, preprocess)]))
    panels = [(_pipeline_title(cfg), rows)]
    if n_images >= 2:
        bits = cfg.augment.lsb_swap.bits
        state = "enabled" if cfg.augment.lsb_swap.enabled else "off in this recipe; shown for reference"
        panels.append(
            (
                f"LSB Swap, {bits} low bits ({state}): invisible in the image, exact in the bit-planes",
                lsb_panel(originals[0], originals[1], bits),
            )
        )
    return panels


def augment_preview(cfg: Config, out: str | Path, n_images: int = 8, views: int = 3, seed: int = 0) -> Path:
    """Write the preview grid to ``out`` (atomically) in the format its suffix names (.png, .jpg,
    .jpeg, .pdf, .svg; PNG otherwise); return its path. A config train refuses is refused here
    too: the grid would show a pipeline no run can train with."""
    from scarce.engine.startup import validate_config

    validate_config(cfg)
    fig = image_grid_figure(preview_panels(cfg, n_images, views, seed))
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt if fmt in ("png", "jpg", "jpeg", "pdf", "svg") else "png")
    return out
