"""Test-time augmentation on finished small-data cells (no new training): test top-1 per view count.

For each config and data seed, the cell ``<tag>/<config>/seed<s>`` predicts the official test
set with 1 view and with each ``--views`` count (``predict_run``: view 0 the clean image, odd
views mirrored, and every augmented view through the run's RandAugment when it trained with
one; cached in the cell's ``predictions/``, shared with ``small_data_ensemble.py``)::

    .venv/bin/python benchmarks/small_data_tta.py --configs tuned tuned_ra9 --seeds 0 --views 2 4

Writes ``benchmarks/results/<name>.{md,json}``; last lines ``tta_gain_<views>: X`` (mean over
configs and seeds, in points).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402
from small_data_ensemble import pm, predictions  # noqa: E402


def top1(run_dir: Path, views: int) -> float:
    from scarce.engine.evaluation import load_run

    preds = predictions(run_dir, load_run(run_dir, "cpu").cfg.data, "test", views)
    return float((preds.probs.argmax(1) == preds.targets).mean())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--views", type=int, nargs="+", default=[2, 4], help="TTA view counts besides 1")
    p.add_argument("--tag", default="fashion-mnist-k50")
    p.add_argument("--work", type=Path, default=HERE / "work")
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--name", default="tta100")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    views = [1, *args.views]
    scores = {
        c: {v: [top1(args.work / args.tag / c / f"seed{s}", v) for s in args.seeds] for v in views}
        for c in args.configs
    }
    header = ["config", "n", *[f"test top-1 % ({v} view{'s' if v > 1 else ''})" for v in views]]
    rows = [[c, len(args.seeds), *[pm(scores[c][v]) for v in views]] for c in args.configs]
    gains = {
        f"tta_gain_{v}": round(100 * float(np.mean([np.subtract(scores[c][v], scores[c][1]) for c in scores])), 2)
        for v in args.views
    }
    out = {
        "scores": {c: {str(v): s for v, s in vs.items()} for c, vs in scores.items()},
        "seeds": args.seeds,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": machine(),
    }
    write_results(args.results, args.name, out, markdown_table(header, rows), gains)
    return out


if __name__ == "__main__":
    main()
