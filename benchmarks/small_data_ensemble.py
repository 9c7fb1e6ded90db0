"""Full recipe + TTA, and the 5-model ensemble, on finished small-data cells (no new training).

Members are the ``full`` cells of ``benchmarks/small_data.py`` (seeds 0-4; base = seed 0).
Every member predicts the base's val split (for the auto threshold) and the official test
set with ``predict_run`` (calibrated probabilities), once with 1 view and once with
``--tta`` views. Predictions are cached as ``.npz`` in each cell's ``predictions/``.
Run from the repository root after the cells exist::

    .venv/bin/python benchmarks/small_data_ensemble.py --tta 4

Writes ``benchmarks/results/small_data_ensemble_vote.{md,json}``; last line ``ensemble_soft_top1: X``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402

from scarce.inference import choose_threshold, load_predictions, plurality_vote, predict_run, soft_vote  # noqa: E402
from scarce.inference.predict import write_predictions  # noqa: E402
from scarce.inference.voting import oracle_accuracy  # noqa: E402


def predictions(run_dir: Path, data, split: str, views: int):
    """Cached ``predict_run`` of one member on ``split`` of ``data`` with ``views`` TTA views."""
    path = run_dir / "predictions" / f"{split}-tta{views}.npz"
    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        write_predictions(
            predict_run(run_dir, data=data, split=split, tta_views=views, batch_size=250, num_workers=0, seed=0), path
        )
    return load_predictions(path)


def accuracy(pred, targets: np.ndarray) -> float:
    return float((np.asarray(pred) == targets).mean())


def vote_rows(members_val: list, members_test: list) -> dict:
    """Base, plurality at 0.7 and at the threshold chosen on val, soft vote: test top-1."""
    targets = members_test[0].targets
    for group in (members_val, members_test):  # every member predicted the same images, in order
        if any(len(p.ids) != len(group[0].ids) or (p.ids != group[0].ids).any() for p in group[1:]):
            raise ValueError("members' predictions describe different images")
    val = np.stack([p.probs for p in members_val])
    test = np.stack([p.probs for p in members_test])
    auto, table = choose_threshold(val[0], val, members_val[0].targets)
    oracle = oracle_accuracy(test, targets)
    return {
        "base": accuracy(test[0].argmax(1), targets),
        "members": [accuracy(t.argmax(1), targets) for t in test],
        "plurality_0.7": accuracy(plurality_vote(test[0], test, 0.7).numpy(), targets),
        "replaced_0.7": float((plurality_vote(test[0], test, 0.7).numpy() != test[0].argmax(1)).mean()),
        "auto_threshold": auto,
        "plurality_auto": accuracy(plurality_vote(test[0], test, auto).numpy(), targets),
        "soft": accuracy(soft_vote(test).numpy().argmax(1), targets),
        "oracle": oracle,
        "val_table": [r._asdict() for r in table],
    }


def overlap_with_base_val(base_cfg, seeds: list[int]) -> dict:
    """How many of the base's val images each member trained on (other split seeds)."""
    from scarce.data.fashion_mnist import fashion_mnist_splits

    val = set(
        fashion_mnist_splits(base_cfg.root, base_cfg.per_class, base_cfg.val_per_class, base_cfg.split_seed)["val"].ids
    )
    return {
        s: len(val & set(fashion_mnist_splits(base_cfg.root, base_cfg.per_class, None, s)["train"].ids)) for s in seeds
    }


def report(args: argparse.Namespace, out: dict) -> str:
    """The Markdown: one row per way of answering, without and with TTA."""
    s, t = out["single"], out["tta"]
    ms = lambda v: f"{100 * statistics.fmean(v):.2f} +- {100 * statistics.stdev(v):.2f}"  # noqa: E731
    pct = lambda key: [f"{100 * s[key]:.2f}", f"{100 * t[key]:.2f}"]  # noqa: E731
    rows = [
        [
            f"full recipe, seeds {' '.join(map(str, args.seeds[:3]))} (mean +- std)",
            ms(s["members"][:3]),
            ms(t["members"][:3]),
        ],
        [f"base model (seed {args.seeds[0]})", *pct("base")],
        ["plurality vote, threshold 0.7", *pct("plurality_0.7")],
        [
            "plurality vote, threshold chosen on val",
            f"{100 * s['plurality_auto']:.2f} (t={s['auto_threshold']:.2f})",
            f"{100 * t['plurality_auto']:.2f} (t={t['auto_threshold']:.2f})",
        ],
        ["soft vote (mean probability)", *pct("soft")],
        ["oracle (any member right)", *pct("oracle")],
        ["answers replaced by the vote at 0.7", f"{100 * s['replaced_0.7']:.1f} %", f"{100 * t['replaced_0.7']:.1f} %"],
    ]
    return markdown_table(["", "no TTA", f"TTA ({args.tta} views)"], rows) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", type=Path, default=HERE / "work" / "fashion-mnist-k50" / "full")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="first = base")
    p.add_argument("--tta", type=int, default=4)
    p.add_argument("--results", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from scarce.engine.evaluation import load_run

    runs = [args.cells / f"seed{s}" for s in args.seeds]
    base_data = load_run(runs[0]).cfg.data  # every member predicts the base's val split
    start = time.perf_counter()
    out = {"members": [str(r) for r in runs], "tta_views": args.tta, "single": {}, "tta": {}}
    for key, views in (("single", 1), ("tta", args.tta)):
        val = [predictions(r, base_data, "val", views) for r in runs]
        test = [predictions(r, base_data, "test", views) for r in runs]
        out[key] = vote_rows(val, test)
    out["base_val_overlap"] = overlap_with_base_val(base_data, args.seeds[1:])
    out["seconds"] = round(time.perf_counter() - start, 1)
    out["machine"] = machine()
    write_results(
        args.results,
        "small_data_ensemble_vote",
        out,
        report(args, out),
        {"ensemble_soft_top1": f"{out['tta']['soft']:.4f}"},
    )
    return out


if __name__ == "__main__":
    main()
