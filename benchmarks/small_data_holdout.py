"""A large held-out decision split for Fashion-MNIST cells (no new training): choose on it, not on test.

Each cell's val split has 500 images, and retraining the same images with another training
seed moved its val top-1 by 3.4 points (BENCHMARKS.md, session 12): too noisy to choose among
recipes that differ by a point. This script scores finished cells on ``--per-class`` x 10
images of the 60k train set that no cell of the split seeds ``--exclude-seeds`` trained or
validated on (drawn once with a fixed seed), with the weights each cell kept. The official
test set stays untouched for the final numbers::

    .venv/bin/python benchmarks/small_data_holdout.py --configs tuned tuned_ra9 --seeds 0 1 2

Writes ``benchmarks/results/<name>.{md,json}``; last lines ``best_on_holdout: CONFIG`` and its
test top-1 (among the rows with the most seeds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402
from small_data_ensemble import best_is_final, pm  # noqa: E402

from scarce.data.fashion_mnist import load_arrays, sample_per_class  # noqa: E402

HOLDOUT_SEED = 2026
# the held-out set of the 50/class tables: 500 per class, outside seeds 0-9's train + val
HOLDOUT_KEY = "holdout-500x10-k50-ex9"


def holdout_indices(labels: np.ndarray, per_class: int, k: int, exclude_seeds: list[int]) -> np.ndarray:
    """``per_class`` indices per class of the 60k set outside every excluded seed's train + val."""
    used = np.concatenate([np.concatenate(sample_per_class(labels, [k, k], s)) for s in exclude_seeds])
    free = np.setdiff1d(np.arange(len(labels)), used)
    rng = np.random.default_rng(HOLDOUT_SEED)
    picks = [rng.choice(free[labels[free] == c], per_class, replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def holdout_images(per_class: int = 500, k: int = 50, exclude_seeds: list[int] | None = None):
    """``(images, labels, cache key)`` of the held-out set (the 50/class tables' by default)."""
    exclude_seeds = list(range(10)) if exclude_seeds is None else exclude_seeds
    images, labels = load_arrays(None, "train")
    idx = holdout_indices(labels, per_class, k, exclude_seeds)
    return images[idx], labels[idx], f"holdout-{per_class}x10-k{k}-ex{max(exclude_seeds)}"


def holdout_probs(run_dir: Path, images: np.ndarray, key: str, weights: str = "best") -> np.ndarray:
    """``(N, C)`` calibrated probabilities of the cell's kept (``best``) or final (``last``) weights
    on the held-out images (cached in ``predictions/`` or ``predictions_last/``)."""
    cache = run_dir / ("predictions" if weights == "best" else f"predictions_{weights}") / f"{key}.npz"
    if not cache.is_file() and weights == "best" and best_is_final(run_dir):
        return holdout_probs(run_dir, images, key, best_is_final(run_dir))
    if not cache.is_file():
        if not (run_dir / f"{weights}.safetensors").is_file():  # restored by keep_cells.py without it
            raise SystemExit(f"{run_dir}: no {weights}.safetensors and no kept held-out predictions ({cache.name})")
        from PIL import Image

        import scarce

        model = scarce.load(run_dir / f"{weights}.safetensors", "cpu")
        result = model.predict([Image.fromarray(im) for im in images], batch_size=250)
        cache.parent.mkdir(exist_ok=True)
        np.savez(cache, probs=result.probs)
    return np.load(cache, allow_pickle=False)["probs"]


def holdout_top1(run_dir: Path, images: np.ndarray, labels: np.ndarray, key: str, weights: str = "best") -> float:
    """Top-1 of the cell's kept (``best``) or final (``last``) weights on the held-out images."""
    return float((holdout_probs(run_dir, images, key, weights).argmax(1) == labels).mean())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--per-class", type=int, default=500)
    p.add_argument("--k", type=int, default=50, help="train (and val) images per class of the cells")
    p.add_argument("--exclude-seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--work", type=Path, default=HERE / "work")
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--name", default="holdout100")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    images, labels, key = holdout_images(args.per_class, args.k, args.exclude_seeds)
    tag = f"fashion-mnist-k{args.k}"
    rows, out = [], {}
    for config in args.configs:
        runs = [args.work / tag / config / f"seed{s}" for s in args.seeds]
        runs = [r for r in runs if (r / "summary.json").is_file()]
        if not runs:
            continue
        summaries = [json.loads((r / "summary.json").read_text()) for r in runs]
        hold = [holdout_top1(r, images, labels, key) for r in runs]
        val = [s["best"]["top1"] for s in summaries]
        test = [s["test"]["top1"] for s in summaries]
        out[config] = {"n": len(runs), "holdout": hold, "val": val, "test": test}
        rows.append([config, len(runs), pm(hold), pm(val), pm(test)])
    header = ["config", "n", f"held-out top-1 % ({len(labels)} images)", "val top-1 % (500)", "test top-1 % (10k)"]
    most = max(r["n"] for r in out.values())
    best = max((c for c in out if out[c]["n"] == most), key=lambda c: statistics.fmean(out[c]["holdout"]))
    headline = {
        "best_on_holdout": best,
        "best_on_holdout_test_top1": round(100 * statistics.fmean(out[best]["test"]), 2),
    }
    data = {
        "rows": out,
        "holdout_images": len(labels),
        "exclude_seeds": args.exclude_seeds,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": machine(),
    }
    write_results(args.results, args.name, data, markdown_table(header, rows), headline)
    return data


if __name__ == "__main__":
    main()
