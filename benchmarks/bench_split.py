"""Seeded, stratified train/val/test split of an image folder for the small-data benchmark."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np

from scarce.data.datasets import scan_image_folder
from scarce.errors import UserError
from scarce.io import atomic_path, atomic_write_json


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another filesystem: copy
        shutil.copy2(src, dst)


def split_indices(n: int, k: int | None, rng: np.random.Generator, with_test: bool) -> dict[str, np.ndarray]:
    """Indices of one class: k train + k val (+ the rest as test); k=None: 60/20/20 percent."""
    order = rng.permutation(n)
    if k is None:
        n_train, n_val = max(1, round(0.6 * n)), max(1, round(0.2 * n))
    else:
        n_train = n_val = k
    if n_train + n_val + (1 if with_test else 0) > n:
        raise ValueError(n_train + n_val)
    out = {"train": order[:n_train], "val": order[n_train : n_train + n_val]}
    if with_test:
        out["test"] = order[n_train + n_val :]
    return out


def prepare_folder(root: Path, k: int | None, seed: int, splits_dir: Path) -> str:
    """An image-folder root usable as ``data.name``.

    A root with ``train/val/test`` and no ``k`` is used as it is. Otherwise the pool
    (``root/train`` or the flat ``root``) is split per class with ``seed`` into k train and
    k val images (60/20/20 % without k); the test split is ``root/test`` when present, else
    the rest of the pool. Files are hard-linked under ``splits_dir`` with ``manifest.csv``
    and ``split.json`` (the record of the split); an existing split is reused.
    """
    root = Path(root)
    if k is None and all((root / s).is_dir() for s in ("train", "val", "test")):
        return str(root)
    dst = splits_dir / f"{root.name}-k{k if k is not None else 'pct'}-seed{seed}"
    if (dst / "split.json").is_file():
        return str(dst)
    if dst.exists():
        shutil.rmtree(dst)  # a split interrupted before its record was written
    pool = root / "train" if (root / "train").is_dir() else root
    samples, classes = scan_image_folder(pool)
    own_test = (root / "test").is_dir() and pool != root
    rng = np.random.default_rng(seed)
    rows = []
    for index, name in enumerate(classes):
        files = [rel for rel, c in samples if c == index]
        try:
            picks = split_indices(len(files), k, rng, with_test=not own_test)
        except ValueError as exc:
            raise UserError(
                f"{pool}: class '{name}' has {len(files)} images; the split needs more than "
                f"{exc.args[0]} (k={k} train + k val{'' if own_test else ' + >=1 test'})"
            ) from None
        rows += [
            (split, str(pool / files[i]), f"{split}/{files[i]}") for split, idx in picks.items() for i in sorted(idx)
        ]
    if own_test:
        test_samples, _ = scan_image_folder(root / "test")
        rows += [("test", str(root / "test" / rel), f"test/{rel}") for rel, _ in test_samples]
    for _, source, target in rows:
        _link(Path(source), dst / target)
    with atomic_path(dst / "manifest.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("split", "source", "path"), *rows])
    counts = {s: sum(1 for r in rows if r[0] == s) for s in ("train", "val", "test")}
    atomic_write_json(
        dst / "split.json",
        {
            "source": str(root),
            "k": k,
            "seed": seed,
            "classes": classes,
            "counts": counts,
            "test_from": "root/test" if own_test else "rest of pool",
        },
    )
    return str(dst)
