"""Keep finished cells' predictions in the repository, and put them back into a work dir.

A cell's weights (45 MB for resnet18) cannot be committed, and a work dir does not outlive its
machine: ensembles and paired tables could only use cells trained in the same session. ``keep``
writes, per finished cell of ``--work``, its small files (config, summary, classes, metrics, ...)
and one compressed ``predictions.npz``: the calibrated probabilities (float16) of its final
weights on val, test (1 and 2 views) and the held-out images, of its kept (best) weights on test
and held-out, and of its final EMA weights where it has them. ``restore`` turns that back into
cells that ``select_weights.py``, ``small_data_ensemble.py`` and ``small_data_holdout.py`` score
as if the weights were there (from the cached predictions they read first)::

    .venv/bin/python benchmarks/keep_cells.py keep --work /work/bench18 --name session18
    .venv/bin/python benchmarks/keep_cells.py restore --name session18 --work /work/bench19

Writes under ``benchmarks/results/cells/<name>/<tag>/<config>/seed<s>/`` and lists them in
``results/kept_<name>[_<tag>].md`` (the tag named unless it is the default); ends with ``cells: N``
and ``kept_mb: X``.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402
from small_data_ensemble import best_is_final, cache_path, has_weights, predictions, run_data  # noqa: E402
from small_data_holdout import HOLDOUT_KEY, holdout_images, holdout_top1  # noqa: E402

from scarce.inference.predictions import Predictions, save_predictions  # noqa: E402

KEPT_DIR = HERE / "results" / "cells"
DEFAULT_TAG = "fashion-mnist-k50"
HOLDOUT_TAG = "fashion-mnist-k50"  # small_data_holdout.py draws its held-out images for 50/class only
# (weights, split, views): split "holdout" is the held-out images of small_data_holdout.py
KEPT = [
    ("last", "val", 1),
    ("last", "test", 1),
    ("last", "holdout", 1),
    ("best", "val", 1),
    ("best", "test", 1),
    ("best", "holdout", 1),
    ("last_ema", "val", 1),
    ("last_ema", "test", 1),
    ("last_ema", "holdout", 1),
]
TTA = [("last", "test", 2), ("last", "val", 2)]  # --tta: for cells that will be ensemble members
SKIPPED = {".lock", "checkpoints"}  # besides weights and prediction caches


def finished_cells(work: Path, tag: str) -> list[Path]:
    return sorted(p.parent for p in (work / tag).glob("*/seed*/summary.json"))


def _rounded(probs: np.ndarray, what: str) -> np.ndarray:
    """``probs`` as float16, refused if rounding would change any image's top class beyond exact
    ties (which argmax breaks by class order either way)."""
    small = probs.astype(np.float16)
    top = probs.max(axis=1, keepdims=True)
    tied = ((probs == top).sum(axis=1) > 1) | ((small == small.max(axis=1, keepdims=True)).sum(axis=1) > 1)
    changed = int(((small.argmax(1) != probs.argmax(1)) & ~tied).sum())
    if changed:
        raise SystemExit(f"{what}: float16 would change the top class of {changed} images; not kept")
    return small


def _arrays_of(cell: Path, holdout, tta: bool) -> dict[str, np.ndarray]:
    """The kept arrays of one cell (computing any prediction its caches lack)."""
    data = run_data(cell)
    arrays: dict[str, np.ndarray] = {}
    same = best_is_final(cell)
    for weights, split, views in KEPT + (TTA if tta else []):
        key = f"{weights}/{split}/{views}"
        if weights == "best" and same is not None:  # restored as a copy of the final weights'
            arrays["best_is"] = np.array(same)
            continue
        if not has_weights(cell, weights):
            continue
        if split == "holdout" and holdout is None:  # held-out images exist for the 50/class tables only
            continue
        if split == "holdout":
            holdout_top1(cell, *holdout, weights=weights)  # fills the cache
            path = cell / f"predictions_{weights}" if weights != "best" else cell / "predictions"
            probs = np.load(path / f"{HOLDOUT_KEY}.npz", allow_pickle=False)["probs"]
            arrays[key] = _rounded(probs, f"{cell} {key}")
            continue
        p = predictions(cell, data, split, views, weights)
        arrays[key] = _rounded(p.probs, f"{cell} {key}")
        arrays.setdefault(f"ids/{split}", p.ids)
        arrays.setdefault(f"targets/{split}", p.targets.astype(np.int16))
        arrays.setdefault("classes", p.classes)
    return arrays


def keep_cell(cell: Path, dest: Path, holdout, tta: bool = False) -> int:
    """Write ``cell``'s small files and predictions under ``dest``; returns the bytes written."""
    arrays = _arrays_of(cell, holdout, tta)
    dest.mkdir(parents=True, exist_ok=True)
    for f in cell.iterdir():
        if f.name in SKIPPED or f.suffix == ".safetensors" or f.name.startswith("predictions") or not f.is_file():
            continue
        if f.name == "metrics.jsonl":  # 2400 rows at k=10
            (dest / "metrics.jsonl.gz").write_bytes(gzip.compress(f.read_bytes(), mtime=0))
        else:
            shutil.copyfile(f, dest / f.name)
    np.savez_compressed(dest / "predictions.npz", **arrays)
    return sum(f.stat().st_size for f in dest.iterdir())


def restore_cell(kept: Path, cell: Path, replace: bool = False) -> None:
    """A cell dir without weights whose prediction caches hold the kept probabilities
    (float32 again, rows renormalised: float16 rounding moves their sums by ~1e-3). A cell
    already there is refused unless ``replace``: its weights would be scored by old predictions."""
    if not replace and ((cell / "summary.json").exists() or any(cell.glob("predictions*"))):
        raise SystemExit(f"{cell}: a cell is already there; restore into another --work, or --replace")
    if replace:
        for old in cell.glob("predictions*"):
            shutil.rmtree(old)
    cell.mkdir(parents=True, exist_ok=True)
    for f in kept.iterdir():
        if f.name == "metrics.jsonl.gz":
            (cell / "metrics.jsonl").write_bytes(gzip.decompress(f.read_bytes()))
        elif f.name != "predictions.npz":
            shutil.copyfile(f, cell / f.name)
    with np.load(kept / "predictions.npz", allow_pickle=False) as z:
        stored = [tuple(k.split("/")) for k in z.files if k.count("/") == 2]
        best_is = str(z["best_is"]) if "best_is" in z.files else None  # best.safetensors held final weights
        wanted = stored + [("best", split, views) for w, split, views in stored if w == best_is and views == "1"]
        for weights, split, views in wanted:
            source = best_is if weights == "best" and best_is else weights
            probs = z[f"{source}/{split}/{views}"].astype(np.float32)
            probs /= probs.sum(axis=1, keepdims=True)
            if split == "holdout":
                path = cell / ("predictions" if weights == "best" else f"predictions_{weights}") / f"{HOLDOUT_KEY}.npz"
                path.parent.mkdir(exist_ok=True)
                np.savez(path, probs=probs)
                continue
            p = Predictions(probs, z[f"ids/{split}"], z["classes"], z[f"targets/{split}"].astype(np.int64), {})
            path = cache_path(cell, weights, split, int(views))
            path.parent.mkdir(exist_ok=True)
            save_predictions(path, p.probs, p.ids, p.classes, p.targets, {"restored_from": str(kept)})


def kept_cells(root: Path) -> list[Path]:
    cells = sorted(p.parent for p in root.glob("*/seed*/predictions.npz"))
    if not cells:
        raise SystemExit(f"{root}: no kept cell (<config>/seed<s>/predictions.npz) there")
    return cells


def kept_as_is(cell: Path, kept: Path) -> bool:
    """``cell`` is kept at ``kept`` from the same finished training (its summary.json, with run dir
    and seconds, is the same): a second ``keep`` as more cells finish adds only the new ones, and a
    cell of the same config and seed from another work dir (another setting) is not taken for it."""
    summary = kept / "summary.json"
    return (
        (kept / "predictions.npz").is_file()
        and summary.is_file()
        and summary.read_bytes() == (cell / "summary.json").read_bytes()
    )


def kept_row(kept: Path, root: Path) -> dict:
    """Size and test top-1 of the final weights, from the kept (float16) arrays themselves."""
    with np.load(kept / "predictions.npz", allow_pickle=False) as z:
        top1 = float((z["last/test/1"].argmax(1) == z["targets/test"]).mean())
    return {
        "cell": str(kept.relative_to(root)),
        "kb": round(sum(f.stat().st_size for f in kept.iterdir()) / 1024),
        "test": top1,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=["keep", "restore"])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--name", required=True, help="folder under --kept: one per session's work dir")
    p.add_argument("--tag", default=DEFAULT_TAG)
    p.add_argument("--kept", type=Path, default=KEPT_DIR)
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--tta", action="store_true", help="also 2-view TTA of the final weights on val and test")
    p.add_argument("--configs", nargs="*", default=None, help="keep only these configs' cells")
    p.add_argument("--replace", action="store_true", help="restore over cells already in --work")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    root = args.kept / args.name / args.tag
    if args.action == "restore":
        cells = kept_cells(root)
        for kept in cells:
            restore_cell(kept, args.work / args.tag / kept.relative_to(root), args.replace)
        print(f"restored {len(cells)} cells of {root} into {args.work / args.tag}")
        return {"cells": len(cells)}
    holdout = holdout_images() if args.tag == HOLDOUT_TAG else None
    cells = [c for c in finished_cells(args.work, args.tag) if args.configs is None or c.parent.name in args.configs]
    # kept already: a restored cell (no weights), or the same training kept under any name (this
    # session's earlier keep, or another name); a cell of the same name from another work dir is not
    passed = [
        c
        for c in cells
        if not (c / "last.safetensors").is_file()
        or any(
            kept_as_is(c, k.parent) for k in args.kept.glob(f"*/{args.tag}/{c.parent.name}/{c.name}/predictions.npz")
        )
    ]
    cells = [c for c in cells if c not in passed]
    if passed:
        print(f"passed over {len(passed)} cells kept already (restored without weights, or the same training kept)")
    if not cells:
        raise SystemExit(f"{args.work / args.tag}: no finished cell with weights that is not kept already")
    for cell in cells:
        keep_cell(cell, root / cell.relative_to(args.work / args.tag), holdout, args.tta)
    rows = [kept_row(kept, root) for kept in kept_cells(root)]  # every cell kept under this name so far
    table = markdown_table(
        ["cell", "kept KB", "test % (final weights)"], [[r["cell"], r["kb"], f"{100 * r['test']:.2f}"] for r in rows]
    )
    headline = {"cells": str(len(rows)), "kept_mb": f"{sum(r['kb'] for r in rows) / 1024:.1f}"}
    out = {"rows": rows, "work": str(args.work), "machine": machine()}
    # one listing per tag: a keep of another tag under the same name must not replace it
    stem = f"kept_{args.name}" if args.tag == DEFAULT_TAG else f"kept_{args.name}_{args.tag}"
    write_results(args.results, stem, out, table + "\n", headline)
    return out


if __name__ == "__main__":
    main()
