"""Regenerate the demo subset shipped in src/scarce/data/demo from Debian's Fashion-MNIST.

50 train + 10 val per class from the 60k train set, 100 test per class from the
official 10k test set, seed 0, written as PNG in image-folder layout.
Run: python scripts/make_demo_data.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

from scarce.data.fashion_mnist import CLASSES, load_arrays, sample_per_class

OUT = Path(__file__).resolve().parents[1] / "src" / "scarce" / "data" / "demo"
NOTICE = """Demo data: a subset of Fashion-MNIST (https://github.com/zalandoresearch/fashion-mnist)
50 train + 10 val images per class from its training set and 100 test images per class
from its test set, sampled with seed 0 by scripts/make_demo_data.py.

The MIT License (MIT) Copyright (c) 2017 Zalando SE, https://tech.zalando.com

Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    images, labels = load_arrays(None, "train")
    train_idx, val_idx = sample_per_class(labels, [50, 10], seed=0)
    test_images, test_labels = load_arrays(None, "test")
    (test_idx,) = sample_per_class(test_labels, [100], seed=0)
    for split, arr, lab, idx in (
        ("train", images, labels, train_idx),
        ("val", images, labels, val_idx),
        ("test", test_images, test_labels, test_idx),
    ):
        for i in idx:
            folder = OUT / split / CLASSES[lab[i]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr[i], "L").save(folder / f"{i:05d}.png", optimize=True)
    (OUT / "NOTICE").write_text(NOTICE)
    print(f"wrote {len(train_idx)} train, {len(val_idx)} val, {len(test_idx)} test images to {OUT}")


if __name__ == "__main__":
    main()
