"""Best-on-val vs final weights, cell by cell (no new training): does picking the epoch help?

For every finished cell under ``--work`` (``<tag>/<config>/seed<s>``) that kept both
``best.safetensors`` (the evaluated epoch with the highest val top-1) and ``last.safetensors``
(the final epoch's), the official test top-1 of each, from the cached 1-view predictions of
``small_data_ensemble.py`` (computed here when missing), beside the epoch the val pick chose::

    .venv/bin/python benchmarks/select_weights.py --work /work/bench16 --name select16

Writes ``benchmarks/results/<name>.{md,json}``; ends with ``last_minus_best_points`` (mean of the
paired differences over all cells) and ``cells``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402
from small_data_ensemble import has_weights, predictions, run_data  # noqa: E402
from small_data_holdout import holdout_images, holdout_top1  # noqa: E402


def cell_row(run: Path, holdout=None) -> dict:
    """Test top-1 of a cell's best and last weights, and where the best epoch fell."""
    summary = json.loads((run / "summary.json").read_text())
    data = run_data(run)
    evaluated = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "val_top1" in r]
    n_val = json.loads((run / "classes.json").read_text())["split_sizes"]["val"]
    top1 = {}
    # an EMA cell's last.safetensors holds the raw model; its averaged weights are scored beside it
    ema = ("last_ema",) if has_weights(run, "last_ema") else ()
    for weights in ("best", "last", *ema):
        p = predictions(run, data, "test", 1, weights)
        top1[weights] = float((p.probs.argmax(1) == p.targets).mean())
        if holdout is not None:
            top1[f"holdout_{weights}"] = holdout_top1(run, *holdout, weights=weights)
    cell = json.loads((run / "cell.json").read_text()) if (run / "cell.json").is_file() else {}
    return {
        **{k: v for k, v in top1.items() if k.startswith("holdout_")},
        "cell": f"{run.parent.name}/{run.name}",
        # the training's wall clock (the last segment's only, for a resumed cell)
        **({"wall_seconds": cell["wall_seconds"]} if "wall_seconds" in cell and not cell.get("resumed") else {}),
        "epochs": summary["epochs"],
        "best_epoch": summary["best"]["epoch"],
        "best_val": summary["best"]["top1"],
        "last_val": max(evaluated[-1]["val_top1"], evaluated[-1].get("val_top1_ema", 0.0)),
        "n_val": n_val,
        "best_test": top1["best"],
        "last_test": top1["last"],
        **({"last_ema_test": top1["last_ema"]} if ema else {}),
    }


def clear_peak(row: dict) -> bool:
    """What ``checkpoint.select=auto`` keeps: the best epoch only if its val top-1 beats the final
    one's by scarce's margin (a real peak rather than the luckiest of many noisy evaluations)."""
    from scarce.engine.saving import clear_margin

    return row["best_val"] - row["last_val"] > clear_margin(row["best_val"], row["n_val"])


def paired(rows: list[dict], kept: list[float], idx: list[int], ref: list[int]) -> str:
    """Test points of ``kept`` weights over the reference config's on the same seeds: mean +- std, wins."""
    by_seed = {rows[i]["cell"].split("/")[1]: kept[i] for i in ref}
    diffs = [
        100 * (kept[i] - by_seed[rows[i]["cell"].split("/")[1]])
        for i in idx
        if rows[i]["cell"].split("/")[1] in by_seed
    ]
    if not diffs:
        return "-"
    spread = f" +- {statistics.stdev(diffs):.2f}" if len(diffs) > 1 else ""
    return f"{statistics.fmean(diffs):+.2f}{spread} ({sum(d > 0 for d in diffs)}/{len(diffs)})"


def pm(values: list[float]) -> str:
    """Mean +- std over seeds of top-1 fractions, in percent."""
    spread = f" +- {100 * statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{100 * statistics.fmean(values):.2f}{spread}"


def pm_present(rows: list[dict], idx: list[int], key: str) -> str:
    """``pm`` of ``key`` over the cells of ``idx`` that have it (EMA cells only); ``-`` when none do."""
    values = [rows[i][key] for i in idx if key in rows[i]]
    return pm(values) if values else "-"


def config_table(rows: list[dict], kept: list[float], reference: str | None = None) -> str:
    """Per config (cells grouped by folder): mean +- std over seeds of each way to pick weights,
    and the rule's paired test gain over ``reference`` (wins / seeds)."""

    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r["cell"].split("/")[0], []).append(i)
    held = all("holdout_best" in r for r in rows)
    ema = any("last_ema_test" in r for r in rows)
    header = ["config", "n", "test % best-on-val", "test % last", "test % best only if clearly higher on val"]
    header += ["test % last EMA"] if ema else []
    header += ["held-out % best-on-val", "held-out % last", "held-out % rule"] if held else []
    header += ["held-out % last EMA"] if held and ema else []
    ref = groups.get(reference or "", [])
    header += [f"rule: paired test vs {reference} (wins)"] if ref else []
    header.append("wall s / cell")
    table = []
    for config, idx in groups.items():
        line = [config, str(len(idx)), *(pm([rows[i][k] for i in idx]) for k in ("best_test", "last_test"))]
        line.append(pm([kept[i] for i in idx]))
        if ema:
            line.append(pm_present(rows, idx, "last_ema_test"))
        if held:
            line += [pm([rows[i][k] for i in idx]) for k in ("holdout_best", "holdout_last")]
            line.append(pm([rows[i]["holdout_best" if clear_peak(rows[i]) else "holdout_last"] for i in idx]))
            if ema:
                line.append(pm_present(rows, idx, "holdout_last_ema"))
        if ref:
            line.append(paired(rows, kept, idx, ref))
        walls = [rows[i]["wall_seconds"] for i in idx if "wall_seconds" in rows[i]]
        line.append(f"{statistics.fmean(walls):.0f} (n={len(walls)})" if walls else "-")
        table.append(line)
    return markdown_table(header, table)


def with_prior_rows(rows: list[dict], priors: list[Path], tag: str, holdout: bool) -> tuple[list[dict], str]:
    """``rows`` after the cells of earlier results files whose config has no cell in ``rows``
    (each row keeps its file in ``from``), and a line saying which configs came from where.
    A file of other data (its ``tag``; files from before it was recorded are 50/class) or
    without held-out scores when ``holdout`` is asked is refused: its rows would pair wrongly."""
    have = {r["cell"].split("/")[0] for r in rows}
    merged, notes = [], []
    for path in priors:
        prior = json.loads(path.read_text())
        if prior.get("tag", "fashion-mnist-k50") != tag:
            raise SystemExit(f"--prior {path}: cells of {prior.get('tag', 'fashion-mnist-k50')}, not --tag {tag}")
        if holdout and not all("holdout_last" in r for r in prior["rows"]):
            raise SystemExit(f"--prior {path}: no held-out scores; drop --holdout or that file")
        taken = [r for r in prior["rows"] if r["cell"].split("/")[0] not in have]
        merged += [{**r, "from": path.stem} for r in taken]
        configs = sorted({r["cell"].split("/")[0] for r in taken})
        if configs:
            notes.append(f"{', '.join(configs)}: cells of {path.name}")
        have |= set(configs)
    note = f"Earlier sessions' cells (other commits or machines): {'; '.join(notes)}.\n\n" if notes else ""
    return merged + rows, note


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--tag", default="fashion-mnist-k50")
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--name", required=True)
    p.add_argument("--reference", default=None, help="config the per-config table pairs every other with")
    p.add_argument("--holdout", action="store_true", help="also score Fashion-MNIST's held-out images (k=50 cells)")
    p.add_argument(
        "--prior",
        type=Path,
        nargs="+",
        default=[],
        help="earlier results JSON of this script: their cells join the tables (configs not trained under "
        "--work only), so a new row is paired with a reference trained in an earlier session",
    )
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    runs = sorted(
        r.parent
        for r in (args.work / args.tag).glob("*/seed*/summary.json")
        if has_weights(r.parent, "last") and has_weights(r.parent, "best")
    )
    if not runs:
        raise SystemExit(f"{args.work / args.tag}: no finished cell with best and last weights")
    holdout = holdout_images() if args.holdout else None
    own = [cell_row(r, holdout) for r in runs]
    rows, prior_note = with_prior_rows(own, args.prior, args.tag, args.holdout)
    margin = [kept_test(r) for r in rows]
    table = cell_table(rows, margin) + "\n\n" + config_table(rows, margin, args.reference)
    summary, headline = overall(own)
    out = {"rows": rows, "work": str(args.work), "tag": args.tag, "machine": machine()}
    write_results(args.results, args.name, out, f"{table}\n\n{prior_note}{summary}", headline)
    return out


def kept_test(row: dict) -> float:
    """Test top-1 of the weights ``checkpoint.select=auto`` keeps."""
    return row["best_test"] if clear_peak(row) else row["last_test"]


def cell_table(rows: list[dict], margin: list[float]) -> str:
    header = ["cell", "best epoch / epochs", "val % best / last", "test % best-on-val", "test % last"]
    header += ["last - best", "best only if clearly higher on val"]
    lines = [
        [
            r["cell"] + (f" ({r['from']})" if "from" in r else ""),
            f"{r['best_epoch'] + 1} / {r['epochs']}",
            f"{100 * r['best_val']:.1f} / {100 * r['last_val']:.1f}",
            f"{100 * r['best_test']:.2f}",
            f"{100 * r['last_test']:.2f}",
            f"{100 * (r['last_test'] - r['best_test']):+.2f}",
            f"{100 * m:.2f} ({'best' if clear_peak(r) else 'last'})",
        ]
        for r, m in zip(rows, margin)
    ]
    return markdown_table(header, lines)


def overall(rows: list[dict]) -> tuple[str, dict]:
    """The closing line and headlines, over the cells trained under --work only (not --prior's)."""
    diffs = [100 * (r["last_test"] - r["best_test"]) for r in rows]
    margin = [kept_test(r) for r in rows]
    spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    mean = lambda xs: 100 * statistics.fmean(xs)  # noqa: E731
    summary = (
        f"last - best over the {len(rows)} cells of --work: {statistics.fmean(diffs):+.2f} +- {spread:.2f} points "
        f"(last higher in {sum(d > 0 for d in diffs)}, lower in {sum(d < 0 for d in diffs)}); mean test top-1: "
        f"best-on-val {mean([r['best_test'] for r in rows]):.2f}, last {mean([r['last_test'] for r in rows]):.2f}, "
        f"best only if clearly higher on val {mean(margin):.2f}\n"
    )
    headline = {
        "last_minus_best_points": f"{statistics.fmean(diffs):+.2f}",
        "margin_rule_minus_best_points": f"{mean(margin) - mean([r['best_test'] for r in rows]):+.2f}",
        "cells": str(len(rows)),
    }
    if all("holdout_last" in r for r in rows):
        held = [100 * (r["holdout_last"] - r["holdout_best"]) for r in rows]
        headline["holdout_last_minus_best_points"] = f"{statistics.fmean(held):+.2f}"
    return summary, headline


if __name__ == "__main__":
    main()
