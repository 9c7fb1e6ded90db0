"""A Fashion-MNIST folder small enough to send to a lent GPU machine (its transfer limit is 64 MiB).

The 60k train images are kept only where a run with ``data.split_seed`` in ``--seeds`` samples
them (train + val, ``fashion_mnist_splits``' own draw); every other image is zeroed, so the file
gzips to a fraction of its size while the labels, and so every seed's draw, stay exactly as in
the Debian package. The 10k test files are copied as they are::

    .venv/bin/python benchmarks/gpu_data.py --out .gpu/fmnist --seeds 0 1 2

Ends with ``kept_images: N`` and ``folder_mb: X``.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import struct
from pathlib import Path

import numpy as np

from scarce.data.fashion_mnist import DEBIAN_ROOT, FILES, load_arrays, sample_per_class


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--val-per-class", type=int, default=50)
    args = p.parse_args(argv)
    images, labels = load_arrays(None, "train")
    keep = np.zeros(len(labels), dtype=bool)
    for seed in args.seeds:
        for idx in sample_per_class(labels, [args.per_class, args.val_per_class], seed):
            keep[idx] = True
    masked = np.where(keep[:, None, None], images, 0).astype(np.uint8)
    args.out.mkdir(parents=True, exist_ok=True)
    images_name, labels_name = FILES["train"]
    with gzip.open(args.out / images_name, "wb") as fh:
        fh.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", *masked.shape) + masked.tobytes())
    for name in (labels_name, *FILES["test"]):
        shutil.copyfile(Path(DEBIAN_ROOT) / name, args.out / name)
    size = sum(f.stat().st_size for f in args.out.iterdir()) / 2**20
    print(f"kept_images: {int(keep.sum())}\nfolder_mb: {size:.1f}")


if __name__ == "__main__":
    main()
