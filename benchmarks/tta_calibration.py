"""Calibration of TTA votes: the single-view temperature vs one fitted on val with as many views.

For each trained run (a cell with a val split), val and test go through the model once with
``max(--views)`` TTA views (seed 0; a vote over V views uses the first V, as ``--tta V`` would).
Each row is one view count V: T fitted on single val views (the run's calibration.json) and T
fitted on the val vote over V views (``scarce.inference.tta_calibration``), and with each the
test vote's top-1, ECE (15 bins) and NLL. No training::

    .venv/bin/python benchmarks/tta_calibration.py --runs /work/bench20/fashion-mnist-k50/tuned_ra9_mixup_wd2e3/seed3

Writes ``benchmarks/results/<name>.{md,json}``; last lines ``ece_single_t_<V>`` and
``ece_views_t_<V>`` (mean over runs, in %, for the largest V).
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


def vote_metrics(scores: torch.Tensor, targets: torch.Tensor, temperature: float) -> dict[str, float]:
    """Top-1, ECE and NLL of the soft vote ``mean_v softmax(scores[:, v] / T)``."""
    from scarce.calibration import expected_calibration_error, soft_vote_nll

    vote = (scores.double() / temperature).softmax(2).mean(1)
    return {
        "top1": 100 * float((vote.argmax(1) == targets).double().mean()),
        "ece": 100 * expected_calibration_error(vote, targets),
        "nll": soft_vote_nll(scores, targets, temperature),
    }


def score_run(run_dir: Path, views: list[int], batch_size: int) -> list[dict]:
    from scarce.engine.calibrate import fitted_temperature
    from scarce.engine.evaluation import eval_dataset, load_run, run_data_config
    from scarce.inference.tta_calibration import FIT_IMAGES, view_scores

    run = load_run(run_dir, "cpu")
    data = run_data_config(run, None)
    val, val_targets = view_scores(run, eval_dataset(run, data, "val"), max(views), batch_size, max_images=FIT_IMAGES)
    test, test_targets = view_scores(run, eval_dataset(run, data, "test"), max(views), batch_size)
    rows = []
    for v in views:
        t_views = fitted_temperature(val[:, :v], val_targets)[0]  # as predict fits it
        single = vote_metrics(test[:, :v], test_targets, run.temperature)
        own = vote_metrics(test[:, :v], test_targets, t_views)
        rows.append(
            {"run": str(run_dir), "views": v, "n_val": len(val_targets), "n_test": len(test_targets)}
            | {"t_single": run.temperature, "t_views": t_views}
            | {f"{k}_single_t": x for k, x in single.items()}
            | {f"{k}_views_t": x for k, x in own.items()}
        )
    return rows


def report(rows: list[dict]) -> str:
    header = [
        "run",
        "views",
        "T single",
        "T views",
        "top-1 % (single T)",
        "top-1 % (views T)",
        "ECE % (single T)",
        "ECE % (views T)",
        "NLL (single T)",
        "NLL (views T)",
    ]
    table = [
        [
            Path(r["run"]).parent.name + "/" + Path(r["run"]).name,
            r["views"],
            f"{r['t_single']:.3f}",
            f"{r['t_views']:.3f}",
            f"{r['top1_single_t']:.2f}",
            f"{r['top1_views_t']:.2f}",
            f"{r['ece_single_t']:.2f}",
            f"{r['ece_views_t']:.2f}",
            f"{r['nll_single_t']:.4f}",
            f"{r['nll_views_t']:.4f}",
        ]
        for r in rows
    ]
    return "\n".join(
        [
            "# TTA votes: single-view temperature vs one fitted on val with as many views",
            "",
            f"Test: {rows[0]['n_test']} images, val: {rows[0]['n_val']} (T fitted on val); views seeded 0 "
            "(view 0 clean, 1 mirror, 2.. through the run's RandAugment).",
            "",
            markdown_table(header, table),
        ]
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="+", type=Path, required=True, help="trained run directories with a val split")
    p.add_argument("--views", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--name", default="tta_calibration")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    start = time.perf_counter()
    rows = [row for run_dir in a.runs for row in score_run(run_dir, sorted(set(a.views)), a.batch_size)]
    top = max(a.views)
    at_top = [r for r in rows if r["views"] == top]
    headlines = {
        f"ece_single_t_{top}": round(statistics.mean(r["ece_single_t"] for r in at_top), 2),
        f"ece_views_t_{top}": round(statistics.mean(r["ece_views_t"] for r in at_top), 2),
    }
    data = {"machine": machine(), "seconds": time.perf_counter() - start, "rows": rows}
    write_results(HERE / "results", a.name, data, report(rows), headlines)
    return headlines


if __name__ == "__main__":
    main()
