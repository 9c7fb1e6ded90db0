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
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from scarce.config import load_config
from scarce.engine.trainer import train
from scarce.inference import load_predictions, predict_run, run_ensemble, write_predictions

RESULTS = Path(__file__).resolve().parent / "results"


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
    auto = run_ensemble(base, members, threshold="auto", val_base=val_base, val_members=val_members,
                        out_path=runs / f"{name}_auto.npz", log=quiet)
    singles = [float((p.probs.argmax(1) == p.targets).mean()) for p in map(load_predictions, members)]
    return {"voters": len(members), "base": fixed["accuracy"]["base"], "member_mean": float(np.mean(singles)),
            "member_best": max(singles), "plurality_0.7": fixed["accuracy"]["plurality"],
            "replaced_0.7": fixed["replaced_fraction"], "plurality_auto": auto["accuracy"]["plurality"],
            "auto_threshold": auto["threshold"], "soft": fixed["accuracy"]["soft"],
            "oracle": fixed["accuracy"]["oracle"]}


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
        "both (paper)": vote(a.runs, "both", files[t1[0]][0], files[t1[0]] + files[tv[0]],
                             files[t1[1]][0], files[t1[1]] + files[tv[1]]),
    }
    result = {"recipe": "fashion-mnist-50", "members": a.members, "epochs": a.epochs, "tta_views": a.tta,
              "test_images": 10000, "rows": rows, "seconds": round(time.perf_counter() - start, 1),
              "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}
    lines = [
        f"# Ensembles on Fashion-MNIST, 50 train images per class: {a.members} x resnet18 (seeds 0..{a.members - 1}), "
        f"{a.epochs} epochs",
        "",
        f"Official 10k test set, top-1. Base = seed 0. TTA = {a.tta} views (clean + mirrored). "
        "'auto' threshold chosen on the 500 val images.",
        "",
        "| members | voters | base | member mean | best member | plurality 0.7 (replaced) | plurality auto (thr) "
        "| soft vote | oracle |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['voters']} | {r['base']:.4f} | {r['member_mean']:.4f} | {r['member_best']:.4f} "
                     f"| {r['plurality_0.7']:.4f} ({r['replaced_0.7']:.1%}) | {r['plurality_auto']:.4f} "
                     f"({r['auto_threshold']:.2f}) | {r['soft']:.4f} | {r['oracle']:.4f} |")
    table = "\n".join(lines)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "ensemble_fmnist.md").write_text(table + "\n", encoding="utf-8")
    (a.out / "ensemble_fmnist.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table)
    plain = rows["no TTA"]
    print(f"plurality_gain: {plain['plurality_0.7'] - plain['base']:+.4f}")
    print(f"soft_gain: {plain['soft'] - plain['base']:+.4f}")
    print(f"tta_gain: {rows[f'TTA {a.tta}']['base'] - plain['base']:+.4f}")


if __name__ == "__main__":
    main()
