"""Small-data benchmark: a matrix of named configs x datasets x per-class counts x seeds.

Every cell is a normal scarce run directory (``train`` through the normal trainer) under
``--work`` (default ``benchmarks/work/``, gitignored), named ``<dataset>-k<k>/<config>/seed<s>``.
A cell with ``summary.json`` is finished and skipped; a cell with ``state.json`` is resumed,
so a killed benchmark continues where it stopped. Results (mean +- std over seeds, n) go to
``benchmarks/results/small_data_<matrix>.{json,md,png}``.

Run from the repository root::

    .venv/bin/python benchmarks/small_data.py --matrix main --seeds 0 1 2 --epochs 20 --jobs 2

Seed ``s`` fixes both the training seed and the per-class sampling (``data.split_seed``); config
``NAME@mN`` is ensemble member N of NAME: the same sampling, training seed ``s + 1000 N``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_configs import MATRICES, MEMBER_SEED_STRIDE, config_overrides, split_member  # noqa: E402
from bench_report import bare_loop_row, epoch_seconds, gather, write_results  # noqa: E402
from bench_results import machine  # noqa: E402


@dataclass(frozen=True)
class Cell:
    """One training run of the matrix."""

    dataset: str  # "fashion-mnist" or an image-folder root
    k: int | None  # train (and val) images per class; None: the folder's own split
    config: str
    seed: int
    overrides: tuple[str, ...]
    run_dir: str

    @property
    def name(self) -> str:
        return str(Path(self.run_dir).relative_to(Path(self.run_dir).parents[2]))


def dataset_tag(dataset: str, k: int | None) -> str:
    base = dataset if dataset == "fashion-mnist" else Path(dataset).name
    return f"{base}-k{k}" if k is not None else base


def data_overrides(dataset: str, k: int | None, seed: int, work: Path) -> list[str]:
    """Overrides that point a cell at its data (building a seeded split of a folder if needed)."""
    if dataset == "fashion-mnist":
        return ["data.name=fashion-mnist", f"data.per_class={k}", f"data.val_per_class={k}", f"data.split_seed={seed}"]
    from bench_split import prepare_folder

    return [f"data.name={prepare_folder(Path(dataset), k, seed, work / 'splits')}"]


def plan(
    configs: list[str],
    datasets: list[str],
    ks: list[int | None],
    seeds: list[int],
    epochs: int | None,
    work: Path,
    extra: list[str],
) -> list[Cell]:
    """Cells in seed-major order, so a cut-short matrix has every config at the same n."""
    cells = []
    for seed in seeds:
        for dataset in datasets:
            for k in ks:
                k = 50 if dataset == "fashion-mnist" and k is None else k
                for config in configs:
                    run_dir = work / dataset_tag(dataset, k) / config / f"seed{seed}"
                    overrides = data_overrides(dataset, k, seed, work) + [f"seed={seed}"]
                    overrides += [f"epochs={epochs}"] if epochs else []
                    overrides += config_overrides(config) + list(extra)
                    member = split_member(config)[1]
                    # an ensemble member: the same images (split_seed), another training seed
                    overrides += [f"seed={seed + MEMBER_SEED_STRIDE * member}"] if member else []
                    cells.append(Cell(dataset, k, config, seed, tuple(overrides), str(run_dir)))
    return cells


def code_commit() -> str | None:
    """The commit of the code that trained a cell (the worktree it runs from)."""
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run_cell(cell: Cell, recipe: str, threads: int | None) -> dict:
    """Train one cell (resuming a killed one); its stdout goes to ``<run_dir>.log`` beside it."""
    from scarce.config import load_config
    from scarce.engine.trainer import train

    run_dir = Path(cell.run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    resume = (run_dir / "state.json").is_file()
    # on a shared CPU, 1 thread per cell beats oversubscription; the run sets torch's threads
    cfg = load_config(recipe, list(cell.overrides) + ([f"threads={threads}"] if threads else []))
    start = time.perf_counter()
    with open(run_dir.with_suffix(".log"), "a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        train(cfg, run_dir, resume=resume, progress=False)
    from scarce.io import atomic_write_json

    record = {
        **asdict(cell),
        "recipe": recipe,
        "resumed": resume,
        "commit": code_commit(),
        "wall_seconds": round(time.perf_counter() - start, 1),  # this invocation only, when resumed
        "epoch_seconds": epoch_seconds(run_dir),  # every invocation's epochs
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
    }
    atomic_write_json(run_dir / "cell.json", record)
    return record


def run_cells(cells: list[Cell], recipe: str, jobs: int, threads: int | None, log=print) -> list[dict]:
    """Run the unfinished cells, ``jobs`` at a time (1: in this process)."""
    todo = [c for c in cells if not (Path(c.run_dir) / "summary.json").is_file()]
    log(f"{len(cells) - len(todo)} of {len(cells)} cells finished already; running {len(todo)}")
    done = []
    if jobs <= 1:
        for i, cell in enumerate(todo):
            log(f"[{i + 1}/{len(todo)}] {cell.name}")
            done.append(run_cell(cell, recipe, threads))
            log(f"    {done[-1]['wall_seconds']} s")
        return done
    # spawn: a fresh interpreter per worker (no forked torch thread pools); one task per child
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        futures = {pool.submit(run_cell, c, recipe, threads): c for c in todo}
        for i, future in enumerate(futures):
            record = future.result()
            log(f"[{i + 1}/{len(todo)}] {futures[future].name}: {record['wall_seconds']} s")
            done.append(record)
    return done


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--matrix", default="main", choices=sorted(MATRICES), help="named set of configs")
    p.add_argument("--configs", nargs="*", help="run only these configs (names in bench_configs.py)")
    p.add_argument(
        "--data",
        nargs="+",
        default=["fashion-mnist"],
        help="fashion-mnist or image-folder roots (with train/val/test, or flat <class>/<image>)",
    )
    p.add_argument("--k", nargs="+", type=int, default=None, help="per-class counts (default: 50 for fashion-mnist)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument(
        "--recipe",
        default=str(HERE / "recipes" / "fashion-mnist-50-base.yaml"),
        help="base recipe of every cell (default: the frozen copy in benchmarks/recipes/)",
    )
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides for every cell")
    p.add_argument("--jobs", type=int, default=1, help="cells trained in parallel processes")
    p.add_argument("--threads", type=int, default=1, help="torch threads per cell (0: torch's default)")
    p.add_argument("--work", type=Path, default=HERE / "work")
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--name", default=None, help="results file stem (default small_data_<matrix>)")
    p.add_argument("--report-only", action="store_true", help="gather finished cells, train nothing")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    configs = args.configs or MATRICES[args.matrix]
    ks = args.k or [None]  # None: 50 for fashion-mnist, a folder's own split (or 60/20/20 %)
    cells = plan(configs, args.data, ks, args.seeds, args.epochs, args.work, args.set)
    if not args.report_only:
        run_cells(cells, args.recipe, args.jobs, args.threads or None)
    name = args.name or f"small_data_{args.matrix}"
    rows = gather(cells)
    reference = None
    if args.data == ["fashion-mnist"] and len(ks) == 1:  # the bare loop beside every Fashion-MNIST table
        reference = bare_loop_row(args.results, ks[0] or 50, args.epochs)
    write_results(
        rows,
        cells,
        args.results,
        name,
        {"argv": sys.argv[1:] if argv is None else argv, "epochs": args.epochs, "recipe": args.recipe},
        reference,
    )
    return {"rows": rows, "cells": cells}


if __name__ == "__main__":
    main()
