"""Up-front dataset checks: every image opened and decoded once, before any training.

Two users: the trainer's preflight (:func:`preflight`: a bad image fails fast with one
line, or is skipped and listed with ``data.skip_bad_images``) and ``scarce data check``
(:func:`check_dataset`: unreadable files, modes, sizes, class counts and exact or near
duplicates between splits, printed by ``scarce data check``).

Duplicate detection (exact and near, across and within splits) lives in
:mod:`scarce.data.duplicates`.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from torchvision import transforms as T

from scarce.data.datasets import Split, is_gray_image, nested_folders, skipped_files, to_mode
from scarce.data.duplicates import HAMMING, NEAR_MAE, SPLIT_PAIRS, dhash, identical_images, near_duplicates, thumbnail
from scarce.data.subset import read_manifest
from scarce.errors import UserError


@dataclass
class ImageCheck:
    """What one image turned out to be; ``reason`` is empty when it decoded."""

    id: str
    reason: str = ""
    mode: str = ""
    size: tuple[int, int] = (0, 0)
    dhash: int = 0
    digest: str = ""
    thumb: np.ndarray | None = None  # float32 [256]: 16x16 grayscale thumbnail minus its mean
    pixels: np.ndarray | None = None  # uint8 [H, W(, C)] decoded in ``mode`` when asked to keep it
    gray: bool = True  # a grayscale mode (or a gray palette)

    @property
    def ok(self) -> bool:
        return not self.reason


def _inspect(
    img: Image.Image,
    check: ImageCheck,
    mode: str | None,
    hashes: bool,
    keep_side: int | None = None,
    full_scale: float | None = None,
) -> None:
    check.mode = img.mode
    img.load()
    check.gray = is_gray_image(img)  # decodes every byte: truncation surfaces here, not in a worker mid-epoch
    # sizes, hashes and pixels of the image as training reads it: a copy stored rotated with an
    # EXIF tag is the same image, and its size is the upright one
    img = ImageOps.exif_transpose(img)
    check.size = img.size
    if mode is not None:
        converted = to_mode(img, mode, full_scale)
        if keep_side is not None:  # the decoded-image cache: shrunk (never enlarged) to keep_side
            if min(converted.size) > keep_side:  # torchvision's Resize, as the evaluation transform does it
                converted = T.Resize(keep_side, interpolation=T.InterpolationMode.BILINEAR, antialias=True)(converted)
            check.pixels = np.asarray(converted).copy()
    if hashes:
        check.dhash = dhash(img)
        check.thumb = thumbnail(img)
        rgb = to_mode(img, "RGB")  # the size too: equal bytes of other shapes are other images
        check.digest = hashlib.blake2b(f"{rgb.size}".encode() + rgb.tobytes(), digest_size=16).hexdigest()


def check_image(
    path: str | os.PathLike,
    mode: str | None = None,
    hashes: bool = False,
    keep_side: int | None = None,
    full_scale: float | None = None,
) -> ImageCheck:
    """Open and fully decode ``path``; never raises for a bad file, it names the reason.
    ``keep_side``: keep the pixels (converted to ``mode``, shorter side at most this, deep images
    scaled by ``full_scale``) in ``.pixels``."""
    check = ImageCheck(str(path))
    try:
        if os.path.getsize(path) == 0:
            check.reason = "empty file (0 bytes)"
            return check
        with Image.open(path) as img:
            _inspect(img, check, mode, hashes, keep_side, full_scale)
    except Image.DecompressionBombError as exc:
        check.reason = f"decompression bomb refused ({exc})"
    except Exception as exc:  # Pillow raises many types for corrupt files; a scan must not stop
        text = str(exc).replace(str(path), "").strip(" '\":") or type(exc).__name__
        check.reason = f"not a readable image ({type(exc).__name__}: {text})"
    return check


def check_split(
    split: Split,
    mode: str | None = None,
    hashes: bool = False,
    workers: int | None = None,
    keep_side: int | None = None,
) -> list[ImageCheck]:
    """:func:`check_image` for every sample of ``split``, in order (threads: decoding drops the GIL)."""
    if split.array is not None:

        def one(i: int) -> ImageCheck:
            check = ImageCheck(split.ids[i])
            _inspect(Image.fromarray(split.array[i]), check, mode, hashes)
            return check

        return [one(i) for i in range(len(split.ids))]
    paths = [Path(split.root) / rel for rel in split.ids]
    workers = workers or min(8, (os.cpu_count() or 1) + 2)
    # contiguous chunks, not one task per image: a small image decodes faster than a thread
    # pool hands out a task (one task per image was 2x slower than a plain loop on 28 px PNGs)
    size = max(64, math.ceil(len(paths) / (4 * workers)))
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    scale = split.full_scale
    if len(chunks) <= 1 or workers == 1:
        return [check_image(p, mode, hashes, keep_side, scale) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(lambda chunk: [check_image(p, mode, hashes, keep_side, scale) for p in chunk], chunks)
        return [check for part in parts for check in part]


def unreadable_train_files(bad_images: list[dict]) -> list[str]:
    """The train-folder files among :func:`preflight`'s skipped ones, where val is drawn from train
    (its files are train's), as :func:`preflight` records them: the train folder / the id."""
    return [b["path"] for b in bad_images if b["split"] in ("train", "val")]


def preflight(
    splits: dict[str, Split],
    mode: str,
    skip_bad: bool,
    workers: int | None = None,
    keep_sides: dict[str, int] | None = None,
) -> tuple[dict[str, Split], list[dict]]:
    """Decode every image file of every split before training.

    Returns the splits without bad images and ``[{"split", "path", "reason"}]``. Without
    ``skip_bad`` the first bad image raises a one-line :class:`UserError` naming it.
    In-memory splits (Fashion-MNIST arrays) have nothing to scan. ``keep_sides``: per split, the
    decoded images (shorter side at most that) stay in ``Split.cache``; none is decoded again.
    """
    kept, bad = {}, []
    for name, split in splits.items():
        if split.array is not None:
            kept[name] = split
            continue
        keep_side = (keep_sides or {}).get(name)
        checks = check_split(split, mode, workers=workers, keep_side=keep_side)
        bad += [{"split": name, "path": c.id, "reason": c.reason} for c in checks if not c.ok]
        keep = [i for i, c in enumerate(checks) if c.ok]
        kept[name] = replace(
            split,
            ids=[split.ids[i] for i in keep],
            targets=[split.targets[i] for i in keep],
            cache=[checks[i].pixels for i in keep] if keep_side is not None else None,
            colour_images=sum(not checks[i].gray for i in keep),
        )
        if bad and not skip_bad:
            first = bad[0]
            more = sum(not c.ok for c in checks) - 1
            raise UserError(
                f"image {first['path']}: {first['reason']}"
                f"{f' (and {more} more in {name})' if more else ''}; fix or remove it, "
                f"or skip bad images with --skip-bad-images (data.skip_bad_images=true)"
            )
        empty = sorted(set(range(len(split.classes))) - set(kept[name].targets))
        if name == "train" and empty and len(keep) < len(split.ids):  # val/test may lack a class
            raise UserError(
                f"data {split.root}: class '{split.classes[empty[0]]}' has no readable images left "
                f"after skipping bad ones"
            )
    return kept, bad


def class_count_problem(data_name: str, classes: list[str]) -> str:
    """Why a classifier cannot be trained on ``classes`` ('' when it can), in ``scarce train``'s words."""
    if len(classes) >= 2:
        return ""
    return (
        f"data '{data_name}': {len(classes)} class ({', '.join(classes)}); a classifier needs at least 2 class folders"
    )


def check_dataset(
    splits: dict[str, Split],
    max_mae: float = NEAR_MAE,
    manifest_root: str | None = None,
    workers: int | None = None,
    data_name: str | None = None,
) -> dict:
    """The report of ``scarce data check``: per split images, class counts, modes, sizes and
    bad files; duplicates across :data:`SPLIT_PAIRS`; manifest paths that escape the root;
    identical images within a split (under two labels, or repeated under one); fewer than 2
    classes (``data_name`` names the dataset there, default the train folder)."""
    checks = {name: check_split(split, hashes=True, workers=workers) for name, split in splits.items()}
    report: dict = {"splits": {}, "duplicates": [], "manifest": [], "max_hamming": HAMMING, "max_mae": max_mae}
    few = class_count_problem(data_name or str(splits["train"].root), splits["train"].classes)
    report["too_few_classes"] = [few] if few else []
    for name, split in splits.items():
        good = [c for c in checks[name] if c.ok]
        widths, heights = [c.size[0] for c in good], [c.size[1] for c in good]
        report["splits"][name] = {
            "images": len(split.ids),
            "classes": {
                cls: int(n) for cls, n in zip(split.classes, np.bincount(split.targets, minlength=len(split.classes)))
            },
            "bad": [{"path": c.id, "reason": c.reason} for c in checks[name] if not c.ok],
            "modes": dict(Counter(c.mode for c in good)),
            # min and max of width and height separately: a tuple min would compare widths first
            "sizes": {
                "min": [min(widths), min(heights)] if good else None,
                "max": [max(widths), max(heights)] if good else None,
                "distinct": len({c.size for c in good}),
            },
        }
        if split.array is None and split.root is not None:  # files of the folder the scan passes over
            report["splits"][name]["skipped_files"] = skipped_files(split.root, split.classes)
            report["splits"][name]["nested_folders"] = nested_folders(split.root, split.classes)
        conflicts, repeats = identical_images(name, split, checks[name])
        report["label_conflicts"] = report.get("label_conflicts", []) + conflicts
        report["repeats"] = report.get("repeats", []) + repeats
    for a, b in SPLIT_PAIRS:
        if a in checks and b in checks:
            for i, j, dist, mae, exact in near_duplicates(checks[a], checks[b], max_mae=max_mae):
                report["duplicates"].append(
                    {
                        "kind": "exact" if exact else "near",
                        "hamming": dist,
                        "mae": mae,
                        a: checks[a][i].id,
                        b: checks[b][j].id,
                        "splits": [a, b],
                    }
                )
    if manifest_root is not None and (Path(manifest_root) / "manifest.csv").is_file():
        try:
            read_manifest(manifest_root)
        except UserError as exc:
            report["manifest"].append(str(exc))
    report["problems"] = (
        sum(len(s["bad"]) for s in report["splits"].values())
        + len(report["duplicates"])
        + len(report["manifest"])
        + len(report["label_conflicts"])
        + len(report["repeats"])
        + len(report["too_few_classes"])
    )
    return report
