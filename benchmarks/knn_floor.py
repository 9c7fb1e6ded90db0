"""Sanity floor: 1-nearest-neighbour on raw pixels, Fashion-MNIST k per class, official 10k test.

The same per-class sampling as the trainer (``fashion_mnist_splits`` with ``data.split_seed``),
so any trained model can be compared with it cell for cell. Run from the repository root::

    .venv/bin/python benchmarks/knn_floor.py --per-class 50 --seeds 0 1 2

Writes ``benchmarks/results/knn_floor.{md,json}``; last line ``knn_top1: X`` (mean over seeds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402

from scarce.data.fashion_mnist import fashion_mnist_splits  # noqa: E402

RESULTS = HERE / "results"


def nearest_neighbour_top1(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, chunk: int = 2000
) -> float:
    """1-NN accuracy with Euclidean distance. ``*_x`` float ``[N, D]``, ``*_y`` long ``[N]``."""
    correct = 0
    for start in range(0, len(test_x), chunk):
        dist = torch.cdist(test_x[start : start + chunk], train_x)  # [chunk, N_train]
        correct += int((train_y[dist.argmin(1)] == test_y[start : start + chunk]).sum())
    return correct / len(test_x)


def run(per_class: int, seeds: list[int], root: str | None) -> dict:
    results = {}
    for seed in seeds:
        splits = fashion_mnist_splits(root, per_class, None, seed)
        as_x = lambda s: torch.from_numpy(s.array.reshape(len(s.targets), -1).copy()).float() / 255  # noqa: E731
        train, test = splits["train"], splits["test"]
        results[seed] = nearest_neighbour_top1(
            as_x(train), torch.tensor(train.targets), as_x(test), torch.tensor(test.targets)
        )
    values = list(results.values())
    return {
        "per_class": per_class,
        "seeds": seeds,
        "top1": results,
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "test_images": 10000,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--root", default=None, help="folder with the IDX .gz files (default: Debian's)")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    start = time.perf_counter()
    out = run(args.per_class, args.seeds, args.root)
    out["seconds"] = round(time.perf_counter() - start, 1)
    out["machine"] = machine()
    table = markdown_table(
        ["train / class", "seeds", "1-NN test top-1 % (per seed)", "mean +- std"],
        [
            [
                out["per_class"],
                " ".join(map(str, out["seeds"])),
                " ".join(f"{100 * v:.2f}" for v in out["top1"].values()),
                f"{100 * out['mean']:.2f} +- {100 * out['std']:.2f}",
            ]
        ],
    )
    write_results(args.results, "knn_floor", out, table, {"knn_top1": f"{out['mean']:.4f}"})
    return out


if __name__ == "__main__":
    main()
