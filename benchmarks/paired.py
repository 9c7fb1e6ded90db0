"""Variants of one config side by side, paired by data seed (no new training).

A variant is a set of finished cells: ``NAME=WORK`` (the cells of ``--config`` under another work
dir, e.g. a lane run with ``--set model.small_input=true``) or ``NAME=WORK:CONFIG`` (another config).
The first variant is the reference: each other one gets its test top-1 difference on the same data
seeds (mean +- std of the paired differences, and on how many seeds it won), beside the train
seconds per epoch (median over the run's epochs, so a short slowdown of a shared CPU does not
count) and the overrides that tell the variant from the reference::

    .venv/bin/python benchmarks/paired.py --config tuned_ra9_lsb_before --name small_input100 \\
        --variant unchanged=/work/bench_work --variant stem=/work/bench_si_stem --variant up64=/work/bench_si_up64

Writes ``benchmarks/results/<name>.{md,json}``; ends with ``best_variant`` (the reference when
no variant is higher on average) and ``best_paired_gain_points`` (the highest variant's gain).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_report import cell_metrics, mean_std  # noqa: E402
from bench_results import machine, markdown_table, write_results  # noqa: E402


def parse_variant(text: str, config: str) -> tuple[str, Path, str]:
    """``NAME=WORK[:CONFIG]`` -> (name, work dir, config)."""
    name, sep, where = text.partition("=")
    if not sep or not name or not where:
        raise SystemExit(f"--variant {text!r}: expected NAME=WORK or NAME=WORK:CONFIG")
    work, _, other = where.partition(":")
    return name, Path(work), other or config


def flat(values: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out = {}
    for key, value in values.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return out


def cell(run_dir: Path) -> dict | None:
    """Test top-1, median train s/epoch, wall seconds and the resolved config of one finished cell."""
    metrics = cell_metrics(run_dir)
    if metrics is None or metrics["test_top1"] is None:  # unfinished, or trained without a test split
        return None
    from scarce.config_yaml import load_yaml
    from scarce.io import read_jsonl

    rows = read_jsonl(run_dir / "metrics.jsonl")
    config = flat(load_yaml((run_dir / "config.yaml").read_text(encoding="utf-8")))
    return {
        "test_top1": metrics["test_top1"],
        "epoch_seconds": statistics.median(r["seconds"] for r in rows),
        "wall_seconds": metrics.get("wall_seconds"),
        "config": config,
    }


def differences(config: dict, reference: dict) -> list[str]:
    """The ``key=value`` settings of ``config`` that differ from ``reference`` (seeds excepted). A key
    that one side's code did not have yet takes today's default (``<absent>`` if it has none)."""
    from scarce.config import Config, config_to_dict

    defaults = flat(config_to_dict(Config()))
    skip = ("seed", "data.split_seed", "threads")
    out = []
    for key in dict.fromkeys([*config, *reference]):
        mine, theirs = (side.get(key, defaults.get(key, "<absent>")) for side in (config, reference))
        if key not in skip and mine != theirs:
            out.append(f"{key}={mine}")
    return out


def variant_row(name: str, cells: dict[int, dict], reference: dict[int, dict]) -> dict:
    scores = [c["test_top1"] for c in cells.values()]
    paired = [100 * (cells[s]["test_top1"] - reference[s]["test_top1"]) for s in cells if s in reference]
    # the paired gain compares the seeds both sides have; the mean is over the variant's own seeds
    first = next(iter(cells.values()))
    ref_first = next(iter(reference.values()))
    mean, std = mean_std(scores)
    return {
        "variant": name,
        "seeds": sorted(cells),
        "test_top1_mean": mean,
        "test_top1_std": std,
        "per_seed": {s: c["test_top1"] for s, c in cells.items()},
        "paired_gain_mean": statistics.fmean(paired) if paired else None,
        "paired_gain_std": statistics.stdev(paired) if len(paired) > 1 else None,
        "paired_wins": sum(d > 0 for d in paired),
        "paired_ties": sum(d == 0 for d in paired),
        "paired_n": len(paired),
        "epoch_seconds": statistics.fmean(c["epoch_seconds"] for c in cells.values()),
        "wall_seconds": mean_std([c["wall_seconds"] for c in cells.values()])[0],
        "differs_by": differences(first["config"], ref_first["config"]),
    }


def markdown(rows: list[dict], reference: str) -> str:
    header = ["variant", "n", "test top-1 %", "per seed", f"paired vs {reference} (points)", "wins"]
    header += ["train s/epoch", "wall s/cell", "differs from the reference by"]
    body = []
    for r in rows:
        per_seed = " / ".join(f"{100 * v:.2f}" for _, v in sorted(r["per_seed"].items()))
        gain = "-" if r["paired_gain_mean"] is None or r["variant"] == reference else f"{r['paired_gain_mean']:+.2f}"
        if r["paired_gain_std"] is not None and r["variant"] != reference:
            gain += f" +- {r['paired_gain_std']:.2f}"
        wins = "-" if r["variant"] == reference else f"{r['paired_wins']}/{r['paired_n']}"
        wins += f" ({r['paired_ties']} tied)" if r["paired_ties"] and r["variant"] != reference else ""
        std = r["test_top1_std"] or 0.0
        body.append(
            [r["variant"], len(r["seeds"]), f"{100 * r['test_top1_mean']:.2f} +- {100 * std:.2f}", per_seed, gain, wins]
            + [
                f"{r['epoch_seconds']:.1f}",
                "-" if r["wall_seconds"] is None else f"{r['wall_seconds']:.0f}",
                ", ".join(r["differs_by"]) or "-",
            ]
        )
    return markdown_table(header, body)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="the config of variants given as NAME=WORK")
    p.add_argument("--variant", action="append", required=True, metavar="NAME=WORK[:CONFIG]")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tag", default="fashion-mnist-k50", help="the cells' dataset folder under each work dir")
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--name", required=True, help="results file stem")
    args = p.parse_args(argv)
    variants = [parse_variant(v, args.config) for v in args.variant]
    found = {}
    for name, work, config in variants:
        cells = {s: cell(work / args.tag / config / f"seed{s}") for s in args.seeds}
        found[name] = {s: c for s, c in cells.items() if c is not None}
        if not found[name]:
            raise SystemExit(f"--variant {name}: no finished cell of {config} under {work / args.tag}")
    reference = variants[0][0]
    rows = [variant_row(name, found[name], found[reference]) for name, _, _ in variants]
    gain = lambda r: float("-inf") if r["paired_gain_mean"] is None else r["paired_gain_mean"]  # noqa: E731
    best = max(rows[1:] or rows, key=gain)
    below = best["paired_gain_mean"] is not None and best["paired_gain_mean"] <= 0
    headlines = {
        # the headline must not name a variant "best" that scored below the reference
        "best_variant": f"{reference} (the reference: no variant higher)" if below else best["variant"],
        "best_paired_gain_points": "-" if best["paired_gain_mean"] is None else f"{best['paired_gain_mean']:+.2f}",
    }
    data = {"config": args.config, "reference": reference, "rows": rows, "machine": machine()}
    text = markdown(rows, reference)
    write_results(args.results, args.name, data, text, headlines)
    return {**data, "headlines": headlines}


if __name__ == "__main__":
    main()
