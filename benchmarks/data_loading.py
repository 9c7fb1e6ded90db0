"""Data loading at ImageNet scale: scarce's loader vs timm's ``create_loader`` on the same folder.

A synthetic image folder (default 1,000 classes x 50 JPEGs at 400x350, like VIPriors'
ImageNet subset) is generated into a temp dir; both loaders then decode, RandomResizedCrop
224 (scale 0.08-1, bilinear), flip and RandAugment ``rand-m9-mstd0.5``. The difference that
remains: scarce's workers return uint8 ``[B, 3, 224, 224]`` (normalised later on the device),
timm's (``use_prefetcher=False`` on a CPU) return normalised float32, so timm's workers also
do ToTensor + Normalize. Run from the repository root::

    .venv/bin/python benchmarks/data_loading.py               # full size
    .venv/bin/python benchmarks/data_loading.py --classes 50  # quick

Writes ``benchmarks/results/data_loading.{md,json}``; last line ``loader_vs_timm: X``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402

RESULTS = HERE / "results"


def make_folder(root: Path, classes: int, per_class: int, size: tuple[int, int], distinct: int = 200) -> float:
    """``root/train/<class>/<i>.jpg`` -> seconds taken.

    ``distinct`` smooth random images are JPEG-encoded once and their bytes written round-robin
    to every file: decoding cost does not depend on content being unique, and this keeps
    generation I/O-bound (50,000 encodes would take longer than the benchmark itself).
    """
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(distinct):
        low = rng.integers(0, 256, size=(9, 8, 3), dtype=np.uint8)  # smooth content, photo-like file sizes
        img = Image.fromarray(low).resize(size, Image.BICUBIC)
        noisy = np.clip(np.asarray(img, dtype=np.int16) + rng.integers(-12, 13, size=(size[1], size[0], 3)), 0, 255)
        buf = io.BytesIO()
        Image.fromarray(noisy.astype(np.uint8)).save(buf, "JPEG", quality=90)
        blobs.append(buf.getvalue())
    n = 0
    for c in range(classes):
        folder = root / "train" / f"n{c:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (folder / f"{i:03d}.jpg").write_bytes(blobs[n % distinct])
            n += 1
    return time.perf_counter() - start


def scarce_loader(root: Path, batch: int, workers: int, randaugment: str):
    from scarce.config import AugmentConfig, DataConfig
    from scarce.data import build_data, build_dataset, build_train_loader, set_loader_epoch

    data = DataConfig(name=str(root), img_size=224, channels="rgb", num_workers=workers)
    augment = AugmentConfig(scale=[0.08, 1.0], ratio=[0.75, 4 / 3], hflip=0.5, randaugment=randaugment)
    dataset = build_dataset(build_data(data), "train", data, augment)
    loader = build_train_loader(dataset, batch, 0, workers)
    epoch = iter(range(10**6))

    def fresh():
        set_loader_epoch(loader, next(epoch))
        return iter(loader)

    return fresh


def timm_loader(root: Path, batch: int, workers: int, randaugment: str):
    import torch
    from timm.data import ImageDataset, create_loader

    dataset = ImageDataset(str(root / "train"))
    loader = create_loader(
        dataset,
        input_size=(3, 224, 224),
        batch_size=batch,
        is_training=True,
        scale=(0.08, 1.0),
        ratio=(0.75, 4 / 3),
        hflip=0.5,
        auto_augment=randaugment,
        interpolation="bilinear",
        num_workers=workers,
        use_prefetcher=False,
        device=torch.device("cpu"),
        persistent_workers=False,
    )
    return lambda: iter(loader)


def time_batches(fresh, batches: int, workers: int) -> float:
    """Images/s per worker over ``batches`` batches of a fresh iterator (worker start included
    for both loaders alike; with 0 workers the main process is the one worker)."""
    start = time.perf_counter()
    it, images = fresh(), 0
    for _ in range(batches):
        x, _ = next(it)
        images += x.shape[0]
    del it
    return images / (time.perf_counter() - start) / max(workers, 1)


def measure(root: Path, batch: int, workers: int, batches: int, repeats: int, randaugment: str) -> dict:
    import timm.data  # noqa: F401

    import scarce.data  # noqa: F401  (imports outside the timed setup, for both)

    build = {}
    loaders = {}
    for name, make in (("scarce", scarce_loader), ("timm", timm_loader)):
        start = time.perf_counter()
        loaders[name] = make(root, batch, workers, randaugment)
        build[name] = time.perf_counter() - start  # folder scan and setup
    for fresh in loaders.values():
        time_batches(fresh, 1, workers)  # warm-up: imports, page cache
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(repeats):  # interleaved, so load drift on the shared CPU hits both alike
        for name, fresh in loaders.items():
            rates[name].append(time_batches(fresh, batches, workers))
    return {"per_worker": {n: statistics.median(v) for n, v in rates.items()}, "all": rates, "setup_s": build}


def report(args: argparse.Namespace, out: dict, gen_s: float, n_images: int) -> str:
    """The Markdown: what was measured, then one row per loader."""
    table = markdown_table(
        ["loader", "images/s per worker (median)", "setup s (scan)", "output"],
        [
            [
                "scarce build_train_loader",
                f"{out['per_worker']['scarce']:.1f}",
                f"{out['setup_s']['scarce']:.1f}",
                "uint8, normalised on the device",
            ],
            [
                "timm create_loader",
                f"{out['per_worker']['timm']:.1f}",
                f"{out['setup_s']['timm']:.1f}",
                "float32, normalised in the worker",
            ],
        ],
    )
    return (
        f"Folder: {args.classes} classes x {args.per_class} JPEGs at {args.size[0]}x{args.size[1]} "
        f"({n_images} files, generated in {gen_s:.0f} s); decode + RandomResizedCrop 224 + flip + "
        f"{args.randaugment}, batch {args.batch}, {args.workers} worker(s), {args.batches} batches x "
        f"{args.repeats} interleaved repeats.\n\n{table}\n"
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--size", type=int, nargs=2, default=[400, 350], metavar=("W", "H"))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=0, help="0: decode in the main process (one worker)")
    p.add_argument("--batches", type=int, default=8, help="batches timed per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--randaugment", default="rand-m9-mstd0.5")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="scarce-loading-") as tmp:
        gen_s = make_folder(Path(tmp), args.classes, args.per_class, tuple(args.size))
        out = measure(Path(tmp), args.batch, args.workers, args.batches, args.repeats, args.randaugment)
    ratio = out["per_worker"]["scarce"] / out["per_worker"]["timm"]
    n_images = args.classes * args.per_class
    text = report(args, out, gen_s, n_images)
    record = {
        **out,
        "loader_vs_timm": ratio,
        "generation_s": gen_s,
        "images": n_images,
        "args": {k: v for k, v in vars(args).items() if k != "results"},
        "machine": machine(),
    }
    write_results(args.results, "data_loading", record, text, {"loader_vs_timm": f"{ratio:.3f}"})
    return record


if __name__ == "__main__":
    main()
