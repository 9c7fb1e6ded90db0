"""Gather finished small-data cells into mean +- std tables (JSON, Markdown) and a plot."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

METRICS = (
    "test_top1",
    "test_top5",
    "val_top1",
    "ece_test_before",
    "ece_test_after",
    "best_epoch",
    "wall_seconds",
    "epoch_seconds",
    "val_top1_last",
    "val_top1_ema_last",
)


def epoch_seconds(run_dir: Path) -> float | None:
    """Training seconds summed over ``metrics.jsonl``'s epochs: unlike one invocation's wall clock,
    this covers every part of a killed and resumed cell (an epoch logged twice counts once, the last)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows or any("seconds" not in r for r in rows):  # not a training's metrics (or a torn one)
        return None
    return round(sum({r["epoch"]: r["seconds"] for r in rows}.values()), 3)


def cell_metrics(run_dir: Path) -> dict | None:
    """One finished cell's numbers (None while ``summary.json`` is missing)."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text(encoding="utf-8"))
    cal = summary.get("calibration", {})
    cell_path = run_dir / "cell.json"
    cell = json.loads(cell_path.read_text(encoding="utf-8")) if cell_path.is_file() else {}
    # a resumed cell's wall clock is its last invocation's only: no figure rather than a partial one
    wall = None if cell.get("resumed") else cell.get("wall_seconds")
    last = {}
    if (run_dir / "metrics.jsonl").is_file():  # last epoch: val of the raw and (when on) the EMA weights
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        last = json.loads(lines[-1]) if lines else {}
    return {
        "test_top1": summary.get("test", {}).get("top1"),
        "test_top5": summary.get("test", {}).get("top5"),
        "val_top1": summary["best"]["top1"],
        "best_epoch": summary["best"]["epoch"],
        "best_weights": summary["best"].get("weights"),
        "ece_test_before": cal.get("ece_test_before"),
        "ece_test_after": cal.get("ece_test_after"),
        "temperature": cal.get("temperature"),
        "wall_seconds": wall,
        "epoch_seconds": epoch_seconds(run_dir),
        "val_top1_last": last.get("val_top1"),
        "val_top1_ema_last": last.get("val_top1_ema"),
    }


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def gather(cells: list) -> list[dict]:
    """One row per (dataset tag, config), in plan order: per-seed values, mean, std (ddof=1), n."""
    groups: dict[tuple[str, str], list] = {}
    for cell in cells:
        tag = Path(cell.run_dir).parents[1].name
        groups.setdefault((tag, cell.config), []).append(cell)
    rows = []
    for (tag, config), members in groups.items():
        per_seed = {c.seed: cell_metrics(Path(c.run_dir)) for c in members}
        done = {s: m for s, m in per_seed.items() if m is not None}
        row = {
            "dataset": tag,
            "config": config,
            "n": len(done),
            "seeds": sorted(done),
            "overrides": list(members[0].overrides),
            "per_seed": done,
        }
        for key in METRICS:
            row[key + "_mean"], row[key + "_std"] = mean_std([m[key] for m in done.values()])
        rows.append(row)
    return rows


def bare_loop_row(results: Path, k: int, epochs: int | None) -> dict | None:
    """The bare loop's row (``benchmarks/bare_loop.py`` results at the same k and epochs), to
    print beside every Fashion-MNIST table; None when it has not been run."""
    path = results / f"bare_loop_k{k}_e{epochs}.json"
    if epochs is None or not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    tops = [r["test_top1"] for r in data["rows"]]
    walls = [r["train_seconds"] for r in data["rows"]]
    row = {
        "dataset": f"fashion-mnist-k{k}",
        "config": "bare loop (bare_loop.py)",
        "n": len(tops),
        "seeds": [r["seed"] for r in data["rows"]],
    }
    for key in METRICS:
        row[key + "_mean"], row[key + "_std"] = None, None
    row["test_top1_mean"], row["test_top1_std"] = mean_std(tops)
    row["wall_seconds_mean"], row["wall_seconds_std"] = mean_std(walls)
    return row


def _pm(row: dict, key: str, scale: float = 100.0, digits: int = 2) -> str:
    mean, std = row[key + "_mean"], row[key + "_std"]
    if mean is None:
        return "-"
    return f"{mean * scale:.{digits}f} +- {std * scale:.{digits}f}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| data | config | n | test top-1 % | test top-5 % | val top-1 % | ECE test % (T-scaled) "
        "| ECE test % (raw) | best epoch | wall s/cell | epochs' s/cell |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['config']} | {r['n']} | {_pm(r, 'test_top1')} | {_pm(r, 'test_top5')} "
            f"| {_pm(r, 'val_top1')} | {_pm(r, 'ece_test_after')} | {_pm(r, 'ece_test_before')} "
            f"| {_pm(r, 'best_epoch', 1, 1)} | {_pm(r, 'wall_seconds', 1, 0)} | {_pm(r, 'epoch_seconds', 1, 0)} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["n"]]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 1.5), 3.6))
    labels = [f"{r['config']}\n{r['dataset']}" if len({x["dataset"] for x in rows}) > 1 else r["config"] for r in rows]
    ax.bar(
        range(len(rows)),
        [100 * r["test_top1_mean"] for r in rows],
        yerr=[100 * r["test_top1_std"] for r in rows],
        capsize=3,
        color="#4878a8",
    )
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=8)
    low = min(100 * (r["test_top1_mean"] - r["test_top1_std"]) for r in rows)
    ax.set_ylim(max(0.0, low - 3), None)
    ax.set_ylabel("test top-1 % (mean +- std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(
    rows: list[dict], cells: list, folder: Path, name: str, meta: dict, reference: dict | None = None
) -> None:
    """``<name>.json``/``.md`` through :func:`bench_results.write_results` (table, then the
    headlines: cells finished, the config with the best mean val top-1 and its test top-1), and the plot. ``reference`` (the
    bare loop's row) is printed last in the table and kept out of the headlines."""
    import bench_results

    folder.mkdir(parents=True, exist_ok=True)
    finished = sum(r["n"] for r in rows)
    headlines: dict[str, object] = {"cells_finished": f"{finished}/{len(cells)}"}
    scored = [r for r in rows if r.get("val_top1_mean") is not None and r.get("test_top1_mean") is not None]
    if scored:  # chosen on val, never on test, among the rows with the most seeds (a lucky single seed cannot win)
        most = max(r["n"] for r in scored)
        best = max((r for r in scored if r["n"] == most), key=lambda r: r["val_top1_mean"])
        headlines["best_on_val"] = best["config"]
        headlines["best_on_val_test_top1"] = round(100 * best["test_top1_mean"], 2)
    bench_results.write_results(
        folder,
        name,
        {
            **meta,
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "cells_planned": len(cells),
            "rows": rows,
            "reference": reference,
        },
        markdown(rows + ([reference] if reference else [])),
        headlines,
    )
    plot(rows, folder / f"{name}.png")
