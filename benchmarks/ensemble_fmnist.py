"""Benchmark: base model vs plurality vote vs soft vote, with and without TTA, on
Fashion-MNIST with 50 train images per class (the ``fashion-mnist-50`` recipe).

M models (seeds 0..M-1 of the recipe; seed 0 is the base) are trained into ``--runs``
(skipped when their ``summary.json`` exists, so a rerun only redoes the votes), each
predicts val (50 per class, for ``--threshold auto``) and the official 10k test set with
and without TTA (``--tta`` views; the recipe trains without RandAugment, so TTA is the
clean + mirrored view and more views would repeat them). Then, on test:

- ``no TTA`` / ``TTA``: M members, each predicting without / with TTA;
- ``both``: the paper's layout, 2M voters (every model with and without TTA), base = seed 0 without TTA.

Writes ``benchmarks/results/ensemble_fmnist.md`` and ``.json``; the last lines are
``plurality_gain: X`` (plurality at 0.7 minus base, no TTA), ``soft_gain: X`` and ``tta_gain: X``
(base with TTA minus base without).

    PYTHONPATH=src python benchmarks/ensemble_fmnist.py [--members 5 --epochs 60 --tta 2 --threads 1]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402

from scarce.config import load_config  # noqa: E402
from scarce.engine.trainer import train  # noqa: E402
from scarce.inference import load_predictions, predict_run, run_ensemble, write_predictions  # noqa: E402

RESULTS = HERE / "results"


def train_members(runs: Path, members: int, epochs: int) -> list[Path]:
    dirs = []
    for seed in range(members):
        run_dir = runs / f"seed{seed}"
        if not (run_dir / "summary.json").is_file():
            cfg = load_config("fashion-mnist-50", [f"seed={seed}", f"epochs={epochs}", "data.num_workers=0"])
            train(cfg, run_dir, resume=(run_dir / "state.json").is_file(), progress=False)
        dirs.append(run_dir)
    return dirs


def predict_members(dirs: list[Path], runs: Path, views: int) -> dict[tuple[str, int], list[str]]:
    """(split, views) -> predictions files, one per member (computed once, then reused)."""
    files: dict[tuple[str, int], list[str]] = {}
    for split in ("val", "test"):
        for v in (1, views):
            for run_dir in dirs:
                path = runs / "predictions" / f"{run_dir.name}_{split}_tta{v}.npz"
                if not path.is_file():
                    write_predictions(predict_run(run_dir, None, split, v, "cpu", 256, 0), path)
                files.setdefault((split, v), []).append(str(path))
    return files


def vote(runs: Path, name: str, base: str, members: list[str], val_base: str, val_members: list[str]) -> dict:
    """Accuracies of base / plurality 0.7 / plurality auto / soft / oracle for one member set."""
    quiet = lambda line: None  # noqa: E731
    fixed = run_ensemble(base, members, threshold=0.7, out_path=runs / f"{name}_plurality.npz", log=quiet)
    auto = run_ensemble(
        base,
        members,
        threshold="auto",
        val_base=val_base,
        val_members=val_members,
        out_path=runs / f"{name}_auto.npz",
        log=quiet,
    )
    singles = [float((p.probs.argmax(1) == p.targets).mean()) for p in map(load_predictions, members)]
    return {
        "voters": len(members),
        "base": fixed["accuracy"]["base"],
        "member_mean": float(np.mean(singles)),
        "member_best": max(singles),
        "plurality_0.7": fixed["accuracy"]["plurality"],
        "replaced_0.7": fixed["replaced_fraction"],
        "plurality_auto": auto["accuracy"]["plurality"],
        "auto_threshold": auto["threshold"],
        "soft": fixed["accuracy"]["soft"],
        "oracle": fixed["accuracy"]["oracle"],
    }


def report(a: argparse.Namespace, rows: dict) -> str:
    """The Markdown: one row per member set (no TTA, TTA, both)."""
    table = markdown_table(
        [
            "members",
            "voters",
            "base",
            "member mean",
            "best member",
            "plurality 0.7 (replaced)",
            "plurality auto (thr)",
            "soft vote",
            "oracle",
        ],
        [
            [
                name,
                r["voters"],
                f"{r['base']:.4f}",
                f"{r['member_mean']:.4f}",
                f"{r['member_best']:.4f}",
                f"{r['plurality_0.7']:.4f} ({r['replaced_0.7']:.1%})",
                f"{r['plurality_auto']:.4f} ({r['auto_threshold']:.2f})",
                f"{r['soft']:.4f}",
                f"{r['oracle']:.4f}",
            ]
            for name, r in rows.items()
        ],
    )
    return "\n".join(
        [
            f"# Ensembles on Fashion-MNIST, 50 train images per class: {a.members} x resnet18 (seeds 0..{a.members - 1}), "
            f"{a.epochs} epochs",
            "",
            f"Official 10k test set, top-1. Base = seed 0. TTA = {a.tta} views (clean + mirrored). "
            "'auto' threshold chosen on the 500 val images.",
            "",
            table,
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--tta", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--runs", type=Path, default=Path("runs/bench-ensemble-fmnist"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    start = time.perf_counter()
    dirs = train_members(a.runs, a.members, a.epochs)
    files = predict_members(dirs, a.runs, a.tta)
    t1, tv = (("test", 1), ("val", 1)), (("test", a.tta), ("val", a.tta))
    rows = {
        "no TTA": vote(a.runs, "plain", files[t1[0]][0], files[t1[0]], files[t1[1]][0], files[t1[1]]),
        f"TTA {a.tta}": vote(a.runs, "tta", files[tv[0]][0], files[tv[0]], files[tv[1]][0], files[tv[1]]),
        "both (paper)": vote(
            a.runs, "both", files[t1[0]][0], files[t1[0]] + files[tv[0]], files[t1[1]][0], files[t1[1]] + files[tv[1]]
        ),
    }
    result = {
        "recipe": "fashion-mnist-50",
        "members": a.members,
        "epochs": a.epochs,
        "tta_views": a.tta,
        "test_images": 10000,
        "rows": rows,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": {**machine(), "python": platform.python_version()},
    }
    plain = rows["no TTA"]
    write_results(
        a.out,
        "ensemble_fmnist",
        result,
        report(a, rows),
        {
            "plurality_gain": f"{plain['plurality_0.7'] - plain['base']:+.4f}",
            "soft_gain": f"{plain['soft'] - plain['base']:+.4f}",
            "tta_gain": f"{rows[f'TTA {a.tta}']['base'] - plain['base']:+.4f}",
        },
    )


if __name__ == "__main__":
    main()
