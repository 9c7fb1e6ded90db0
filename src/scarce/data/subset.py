"""``scarce data subset``: a VIPriors-style k-per-class split of any image folder."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np

from scarce.data.datasets import safe_join, scan_image_folder
from scarce.errors import UserError
from scarce.io import atomic_path

# copy first, the default: a hard link is the source file itself, so editing the subset in
# place would edit the source dataset (or the installed package's demo)
LINK_MODES = ("copy", "hard", "sym")


def _place(src: Path, dst: Path, link: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link == "sym":
        os.symlink(src.resolve(), dst)
        return
    if link == "hard":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # other filesystem: fall back to a copy
    shutil.copy2(src, dst)


def make_subset(
    src: str | Path, dst: str | Path, per_class: int, val_per_class: int = 0, seed: int = 0, link: str = "copy"
) -> dict:
    """Sample ``per_class`` train and ``val_per_class`` val images per class from ``src``
    (``src/train`` if it exists), take ``src/test`` whole if present, write ``manifest.csv``.
    ``link``: how the files reach ``dst`` (:data:`LINK_MODES`; copies by default).

    Returns counts per split. ``dst`` must not exist yet (nothing is overwritten).
    """
    if link not in LINK_MODES:
        raise UserError(f"--link '{link}': expected one of {', '.join(LINK_MODES)}")
    if per_class < 1 or val_per_class < 0:
        raise UserError(
            f"--per-class {per_class} / --val-per-class {val_per_class}: expected >= 1 train and "
            f">= 0 val images per class"
        )
    dst = Path(dst)
    if dst.exists():
        raise UserError(f"{dst}: already exists; choose a new destination folder")
    if str(src) == "fashion-mnist":
        return _fashion_mnist_subset(dst, per_class, val_per_class, seed)
    from scarce.data.splits import DEMO_ROOT

    src = DEMO_ROOT if str(src) == "demo" else Path(src)
    pool_root = src / "train" if (src / "train").is_dir() else src
    samples, classes = scan_image_folder(pool_root)
    rng = np.random.default_rng(seed)
    rows, skipped = [], []
    for index, name in enumerate(classes):
        files = [rel for rel, c in samples if c == index]
        need = per_class + val_per_class
        order, bad = _readable_draw(pool_root, files, rng.permutation(len(files)), need)
        skipped += bad
        if need > len(order):
            unreadable = f" readable images ({len(bad)} unreadable)" if bad else " images"
            raise UserError(
                f"{pool_root}: class '{name}' has {len(order)}{unreadable}, {need} asked "
                f"(--per-class {per_class} + --val-per-class {val_per_class})"
            )
        picks = {"train": order[:per_class], "val": order[per_class:need]}
        for split, chosen in picks.items():
            rows += [(split, name, str(pool_root / files[i]), f"{split}/{files[i]}") for i in sorted(chosen)]
    if (src / "test").is_dir() and pool_root != src:
        test_samples, _ = scan_image_folder(src / "test")
        rows += [("test", Path(rel).parts[0], str(src / "test" / rel), f"test/{rel}") for rel, _ in test_samples]
    for _, _, source, target in rows:
        _place(Path(source), dst / target, link)
    _write_manifest(dst, rows)
    counts = {s: sum(1 for r in rows if r[0] == s) for s in ("train", "val", "test")}
    summary = {"classes": len(classes), **counts, "seed": seed, "manifest": str(dst / "manifest.csv")}
    return {**summary, "skipped": skipped}


def _readable_draw(root: Path, files: list[str], order: np.ndarray, need: int) -> tuple[list[int], list[dict]]:
    """The first ``need`` files of ``order`` that decode (all readable ones when fewer), and the
    unreadable ones passed over: a 0-byte or broken file sampled into the subset would leave its
    class short when train's scan refuses or skips it. Only drawn files are decoded, so a folder
    without bad files gives the same sample as a plain draw."""
    from scarce.data.check import check_image  # check imports this module (read_manifest)

    kept, bad = [], []
    for i in order:
        if len(kept) == need:
            break
        check = check_image(root / files[i])
        if check.ok:
            kept.append(int(i))
        else:
            bad.append({"path": str(root / files[i]), "reason": check.reason})
    return kept, bad


def _write_manifest(dst: Path, rows: list[tuple]) -> None:
    with atomic_path(dst / "manifest.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["split", "class", "source", "path"])
        writer.writerows(rows)


def _fashion_mnist_subset(dst: Path, per_class: int, val_per_class: int, seed: int) -> dict:
    """The built-in Fashion-MNIST as an image folder: sampled train/val (the training runs'
    ``sample_per_class``), the official 10k test set whole, PNG files."""
    from PIL import Image

    from scarce.data.fashion_mnist import CLASSES, load_arrays, sample_per_class

    train_x, train_y = load_arrays(None, "train")
    test_x, test_y = load_arrays(None, "test")
    train_idx, val_idx = sample_per_class(train_y, [per_class, val_per_class], seed)
    parts = [
        ("train", train_x, train_y, train_idx, "train"),
        ("val", train_x, train_y, val_idx, "train"),
        ("test", test_x, test_y, np.arange(len(test_y)), "test"),
    ]
    rows = []
    for split, images, labels, indices, source in parts:
        for i in sorted(int(i) for i in indices):
            name = CLASSES[labels[i]]
            target = f"{split}/{name}/{source}-{i:05d}.png"
            (dst / target).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(dst / target)
            rows.append((split, name, f"fashion-mnist:{source}/{i}", target))
    _write_manifest(dst, rows)
    counts = {s: sum(1 for r in rows if r[0] == s) for s in ("train", "val", "test")}
    return {"classes": len(CLASSES), **counts, "seed": seed, "manifest": str(dst / "manifest.csv")}


def read_manifest(root: str | os.PathLike, name: str = "manifest.csv") -> list[dict]:
    """Rows of ``root/name`` (``scarce data subset``'s manifest), each ``path`` checked by
    :func:`safe_join` to stay inside ``root``; an escaping path raises :class:`UserError`."""
    path = Path(root) / name
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "path" not in rows[0]:
        raise UserError(f"{path}: expected a 'path' column, got {', '.join(rows[0])}")
    for row in rows:
        row["path"] = str(safe_join(root, row["path"], what=str(path)))
    return rows
