"""Which prediction source should a head-g model (cosine_ce, focal_cosine) answer from?

Re-scores finished benchmark cells (run directories of benchmarks/small_data.py) on
their test split from each source -- head g's softmax, the fixed-scale cosine scores,
the raw logits -- each with a temperature fitted on the cell's val split, so every
source is compared on the same weights. Prints a table, writes
benchmarks/results/prediction_source.{md,json}, and ends with one
``<source>_top1: X`` line per source (mean over cells).

    python benchmarks/prediction_source.py --cells "benchmarks/work/fashion-mnist-k50/*/seed*"
"""
from __future__ import annotations

import argparse
import glob
import json
import statistics
from pathlib import Path

import torch
import yaml

from scarce.data.loader import build_eval_loader
from scarce.engine.batch import BatchPreprocessor
from scarce.engine.calibrate import collect_scores
from scarce.engine.evaluation import eval_dataset, load_run
from scarce.inference.calibration import expected_calibration_error, fit_temperature
from scarce.losses import loss_requires_head_g

SOURCES = ("g", "cosine", "logits")
RESULTS = Path(__file__).resolve().parent / "results"


def score_cell(run_dir: Path, batch_size: int) -> dict:
    run = load_run(run_dir / "best.safetensors")
    preprocess = BatchPreprocessor(run.mean, run.std, torch.device("cpu"))
    loaders = {split: build_eval_loader(eval_dataset(run, run.cfg.data, split), batch_size, 0)
               for split in ("val", "test")}
    row = {"cell": str(run_dir), "loss": run.cfg.loss.name}
    for source in SOURCES:
        val_scores, val_targets = collect_scores(run.model, loaders["val"], preprocess, source)
        test_scores, test_targets = collect_scores(run.model, loaders["test"], preprocess, source)
        temperature = fit_temperature(val_scores, val_targets)
        probs = (test_scores / temperature).softmax(1)
        row[f"{source}_top1"] = float((probs.argmax(1) == test_targets).double().mean())
        row[f"{source}_ece"] = expected_calibration_error(probs, test_targets)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="benchmarks/work/fashion-mnist-k50/*/seed*",
                        help="glob of finished run directories")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cells = []
    for path in sorted(glob.glob(args.cells)):
        run_dir = Path(path)
        if not (run_dir / "summary.json").is_file():
            continue
        loss = yaml.safe_load((run_dir / "config.yaml").read_text())["loss"]["name"]
        if loss_requires_head_g(loss):
            cells.append(score_cell(run_dir, args.batch_size))
            print(json.dumps(cells[-1]), flush=True)
    if not cells:
        raise SystemExit(f"no finished head-g cells match {args.cells}")
    lines = ["| cell | loss | " + " | ".join(f"{s} top-1 % | {s} ECE %" for s in SOURCES) + " |",
             "| --- | --- | " + " | ".join("---: | ---:" for _ in SOURCES) + " |"]
    for c in cells:
        lines.append(f"| {Path(c['cell']).parent.name}/{Path(c['cell']).name} | {c['loss']} | " + " | ".join(
            f"{100 * c[f'{s}_top1']:.2f} | {100 * c[f'{s}_ece']:.2f}" for s in SOURCES) + " |")
    means = {s: statistics.mean(c[f"{s}_top1"] for c in cells) for s in SOURCES}
    lines.append(f"| mean of {len(cells)} | | " + " | ".join(f"{100 * means[s]:.2f} | " for s in SOURCES) + " |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prediction_source.md").write_text(
        "Test top-1 and ECE (15 bins, temperature fitted on val per source) of the same best weights, "
        "answered from each prediction source.\n\n" + table + "\n")
    (RESULTS / "prediction_source.json").write_text(json.dumps({"cells": cells, "mean_top1": means}, indent=2))
    for source in SOURCES:
        print(f"{source}_top1: {means[source]:.4f}")


if __name__ == "__main__":
    main()
