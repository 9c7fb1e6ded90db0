"""Fashion-MNIST from its IDX ``.gz`` files (Debian's ``dataset-fashion-mnist``).

Zalando SE's Fashion-MNIST, MIT licence. Nothing is downloaded: the files are
read from ``/usr/share/datasets/fashion-mnist`` or a folder the user gives.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from scarce.data.datasets import Split
from scarce.errors import UserError

DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (optionally gzipped) -> numpy array with its declared shape."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"fashion-mnist: {path} not found; install Debian's package "
            f"(apt-get install dataset-fashion-mnist) or set data.root to the folder with the IDX files"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"fashion-mnist: {path} is not an IDX file of uint8 data")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise UserError(f"fashion-mnist: {path} is truncated ({body.size} of {int(np.prod(shape))} values)")
    return body.reshape(shape)


def load_arrays(root: str | None, part: str) -> tuple[np.ndarray, np.ndarray]:
    """``part`` 'train' (60k) or 'test' (10k) -> (uint8 [N, 28, 28], int64 [N])."""
    folder = Path(root or DEBIAN_ROOT)
    images_name, labels_name = FILES[part]
    images = read_idx(folder / images_name)
    labels = read_idx(folder / labels_name).astype(np.int64)
    if len(images) != len(labels):
        raise UserError(f"fashion-mnist: {folder} has {len(images)} {part} images but {len(labels)} labels")
    return images, labels


def sample_per_class(labels: np.ndarray, counts: list[int], seed: int) -> list[np.ndarray]:
    """Disjoint stratified samples: for each entry of ``counts``, that many indices per class.

    One permutation per class (from ``seed``) is cut into consecutive chunks, so
    the first chunk (train) is the same whatever is asked for val.
    """
    rng = np.random.default_rng(seed)
    chunks: list[list[np.ndarray]] = [[] for _ in counts]
    for cls in np.unique(labels):
        order = rng.permutation(np.flatnonzero(labels == cls))
        if sum(counts) > len(order):
            raise UserError(f"fashion-mnist: asked for {sum(counts)} images of class {cls}, only {len(order)} exist")
        start = 0
        for i, count in enumerate(counts):
            chunks[i].append(order[start : start + count])
            start += count
    return [np.sort(np.concatenate(c)) for c in chunks]


def fashion_mnist_splits(
    root: str | None, per_class: int | None, val_per_class: int | None, seed: int
) -> dict[str, Split]:
    """train / val (sampled from the 60k set) and the official 10k test set."""
    images, labels = load_arrays(root, "train")
    if per_class is None and not val_per_class:
        picks = {"train": np.arange(len(labels))}
    else:
        fewest = int(np.bincount(labels).min())  # 6000 in the official set
        train_count = per_class if per_class is not None else fewest - (val_per_class or 0)
        if train_count < 1:  # without per_class, train is what val leaves of each class
            raise UserError(
                f"data.val_per_class={val_per_class}: fashion-mnist has {fewest} train images per class, and "
                f"without data.per_class train is what val leaves of them; give val_per_class below {fewest}"
            )
        counts = [train_count] + ([val_per_class] if val_per_class else [])
        picks = dict(zip(["train", "val"], sample_per_class(labels, counts, seed)))
    splits = {
        name: Split(
            ids=[f"train/{i}" for i in idx], targets=labels[idx].tolist(), classes=list(CLASSES), array=images[idx]
        )
        for name, idx in picks.items()
    }
    test_images, test_labels = load_arrays(root, "test")
    splits["test"] = Split(
        ids=[f"test/{i}" for i in range(len(test_labels))],
        targets=test_labels.tolist(),
        classes=list(CLASSES),
        array=test_images,
    )
    return splits
