"""Has each finished cell converged at its budget? (no new training)

Issue 12 asks for a budget at which every row has converged. A cosine schedule makes every val
curve flatten at the end (the lr goes to zero), so a flat end alone says little; this script
reports two things per cell, read from its ``metrics.jsonl``:

- ``val rise``: mean val top-1 of the last ``--window`` fraction of the run minus the mean of
  the window before it (points). A curve still rising by more than the seed noise says the
  budget is short for that row;
- ``train loss drop``: the same two windows for the train loss (relative drop). Heavy
  augmentation keeps the loss high; a loss still falling fast means the model is still fitting.

With ``--longer WORK`` it also lists the same config and seed trained for longer (another
work dir, e.g. 300 epochs) and the test top-1 difference: the direct answer to "would more
epochs help?"::

    .venv/bin/python benchmarks/convergence.py --configs tuned tuned_ra9_lsb_before tuned_full \\
        --seeds 0 1 2 --work /work/bench_work --longer /work/bench_work300

Writes ``benchmarks/results/<name>.{md,json}``; ends with ``max_val_rise_points`` (the row
whose val curve rose most at the end) and, with ``--longer``, ``max_longer_gain_points``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_report import cell_metrics  # noqa: E402
from bench_results import machine, markdown_table, write_results  # noqa: E402

from scarce.io import read_jsonl  # noqa: E402


def window_means(rows: list[dict], key: str, window: float) -> tuple[float | None, float | None]:
    """Mean of ``key`` over the last ``window`` of the epochs and over the window before it."""
    points = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
    if not points:
        return None, None
    epochs = rows[-1]["epoch"] + 1
    end_start, mid_start = epochs * (1 - window), epochs * (1 - 2 * window)
    end = [v for e, v in points if e >= end_start]
    mid = [v for e, v in points if mid_start <= e < end_start]
    if not end or not mid:
        return None, None
    return statistics.fmean(mid), statistics.fmean(end)


def cell_convergence(run_dir: Path, window: float) -> dict | None:
    """Val rise (points) and train-loss drop (fraction) between the last two windows of one cell."""
    path = run_dir / "metrics.jsonl"
    if not (run_dir / "summary.json").is_file() or not path.is_file():
        return None
    rows = read_jsonl(path)
    val_mid, val_end = window_means(rows, "val_top1", window)
    loss_mid, loss_end = window_means(rows, "train_loss", window)
    return {
        "epochs": rows[-1]["epoch"] + 1,
        "val_rise_points": None if val_mid is None else 100 * (val_end - val_mid),
        "val_end": val_end,
        "train_loss_end": loss_end,
        "train_loss_drop": None if not loss_mid else (loss_mid - loss_end) / loss_mid,
        "test_top1": cell_metrics(run_dir)["test_top1"],
    }


def config_row(work: Path, tag: str, config: str, seeds: list[int], window: float, longer: Path | None) -> dict:
    """Per-seed convergence of one config, means over the seeds, and the longer budget's gain."""
    per_seed = {}
    for seed in seeds:
        found = cell_convergence(work / tag / config / f"seed{seed}", window)
        if found is None:
            continue
        if longer is not None:
            long_cell = cell_convergence(longer / tag / config / f"seed{seed}", window)
            if long_cell is not None:
                found["longer_epochs"] = long_cell["epochs"]
                found["longer_test_top1"] = long_cell["test_top1"]
                found["longer_gain_points"] = 100 * (long_cell["test_top1"] - found["test_top1"])
        per_seed[seed] = found

    def mean(key: str) -> float | None:
        values = [c[key] for c in per_seed.values() if c.get(key) is not None]
        return statistics.fmean(values) if values else None

    keys = ("val_rise_points", "train_loss_end", "train_loss_drop", "test_top1", "longer_gain_points")
    return {"config": config, "n": len(per_seed), "per_seed": per_seed, **{k + "_mean": mean(k) for k in keys}}


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(rows: list[dict], window: float) -> str:
    header = ["config", "n", "test top-1 %", f"val rise, last {window:.0%} (points)", "train loss end", "loss drop"]
    header += ["longer budget: test gain (points, per seed)"]
    body = []
    for r in rows:
        longer = [
            f"s{s} {c['longer_epochs']} ep {c['longer_gain_points']:+.2f}"
            for s, c in r["per_seed"].items()
            if "longer_gain_points" in c
        ]
        body.append(
            [
                r["config"],
                r["n"],
                fmt(None if r["test_top1_mean"] is None else 100 * r["test_top1_mean"], ".2f"),
                fmt(r["val_rise_points_mean"], "+.2f"),
                fmt(r["train_loss_end_mean"], ".3f"),
                fmt(r["train_loss_drop_mean"], ".0%"),
                ", ".join(longer) or "-",
            ]
        )
    return markdown_table(header, body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--work", type=Path, default=HERE / "work")
    p.add_argument("--tag", default="fashion-mnist-k50", help="the cells' dataset folder under --work")
    p.add_argument("--longer", type=Path, default=None, help="a work dir with the same cells at a longer budget")
    p.add_argument("--window", type=float, default=0.2, help="fraction of the run compared with the one before")
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--name", default="convergence100")
    args = p.parse_args()
    if not 0 < args.window <= 0.5:
        sys.exit(f"--window: expected a fraction in (0, 0.5], got {args.window}")
    rows = [config_row(args.work, args.tag, c, args.seeds, args.window, args.longer) for c in args.configs]
    rows = [r for r in rows if r["n"]]
    if not rows:
        sys.exit(f"--work {args.work}: no finished cell of {args.configs} under {args.tag}")
    headlines: dict[str, object] = {}
    worst = max(rows, key=lambda r: r["val_rise_points_mean"] or float("-inf"))
    headlines["max_val_rise_points"] = f"{worst['val_rise_points_mean']:.2f} ({worst['config']})"
    gains = [r for r in rows if r["longer_gain_points_mean"] is not None]
    if gains:
        best = max(gains, key=lambda r: r["longer_gain_points_mean"])
        headlines["max_longer_gain_points"] = f"{best['longer_gain_points_mean']:.2f} ({best['config']})"
    data = {
        "machine": machine(),
        "work": str(args.work),
        "longer": str(args.longer),
        "window": args.window,
        "rows": rows,
    }
    write_results(args.results, args.name, data, markdown(rows, args.window), headlines)


if __name__ == "__main__":
    main()
