"""Head-g runs scored from each prediction source: psi's cosine scores vs head g's softmax.

The focal-cosine and cosine+CE cells predict from head g by default (its softmax is what the
temperature calibrates). This scores the same best weights on the official test set from
both sources in one pass, so a weak g can be told apart from a weak embedding psi.
Run from the repository root after the cells exist::

    .venv/bin/python benchmarks/small_data_sources.py --configs focal_cosine cosine_ce full

Writes ``benchmarks/results/small_data_sources.{md,json}``; ends with one ``<config>_psi_top1: X``
line per config (test top-1 % from psi, mean over seeds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402


@torch.no_grad()
def top1_by_source(run_dir: Path, sources: tuple[str, ...] = ("cosine", "g")) -> dict[str, float]:
    """Test top-1 of ``run_dir``'s best weights for each prediction source."""
    from scarce.data import build_data, build_eval_loader
    from scarce.data.datasets import ImageDataset
    from scarce.data.transforms import EvalTransform
    from scarce.engine.batch import BatchPreprocessor
    from scarce.engine.evaluation import load_run
    from scarce.engine.loop import predict_outputs
    from scarce.models.heads import prediction_scores

    run = load_run(run_dir)
    data = build_data(run.cfg.data)
    dataset = ImageDataset(data.splits["test"], data.mode, EvalTransform(run.cfg.data))
    preprocess = BatchPreprocessor(run.mean, run.std, torch.device("cpu"))
    correct = {s: 0 for s in sources}
    for outputs, target in predict_outputs(run.model, build_eval_loader(dataset, 250, 0), preprocess):
        for s in sources:
            correct[s] += int((prediction_scores(outputs, source=s).argmax(1) == target).sum())
    return {s: c / len(dataset) for s, c in correct.items()}


def mean_std(per_seed: dict[str, dict[str, float]], source: str) -> tuple[float, float]:
    """Mean and std (0 for one seed) over seeds of one source's test top-1."""
    values = [v[source] for v in per_seed.values()]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0


def report(out: dict) -> str:
    """The Markdown: one row per config, test top-1 from each source (mean +- std over seeds)."""

    def cell(per_seed: dict, source: str) -> str:
        mean, std = mean_std(per_seed, source)
        return f"{100 * mean:.2f} +- {100 * std:.2f}"

    return (
        markdown_table(
            [
                "config",
                "n",
                "test top-1 % from psi (calibrated cosine scores, the default now)",
                "test top-1 % from head g (the default before 4e50ac6)",
            ],
            [
                [config, len(per_seed), cell(per_seed, "cosine"), cell(per_seed, "g")]
                for config, per_seed in out.items()
            ],
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", type=Path, default=HERE / "work" / "fashion-mnist-k50")
    p.add_argument("--configs", nargs="+", default=["focal_cosine", "cosine_ce", "full"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--results", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = {}
    for config in args.configs:
        runs = [args.cells / config / f"seed{s}" for s in args.seeds]
        runs = [r for r in runs if (r / "summary.json").is_file()]
        out[config] = {r.name: top1_by_source(r) for r in runs}
    headlines = {
        f"{config}_psi_top1": f"{100 * mean_std(per_seed, 'cosine')[0]:.2f}" for config, per_seed in out.items()
    }
    write_results(args.results, "small_data_sources", {**out, "machine": machine()}, report(out), headlines)
    return out


if __name__ == "__main__":
    main()
