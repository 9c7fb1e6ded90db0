"""Ensemble members given as run directories (or weights files in them): each is predicted first,
so ``scarce ensemble`` takes trained runs as well as predictions files.

A run is predicted on the split to vote on (the runs' own test split unless told otherwise) and,
where the threshold or the weights are chosen on validation predictions none were given for, on
its own val split too. The files are written into one folder beside the ensemble's output
(``final.npz`` -> ``final_members/``), named by position and run, so they can be reused with
``--members``; weights given twice (the base among the members; a run and its best.safetensors) are
predicted once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scarce.config import DataConfig, data_label
from scarce.data.splits import SPLIT_NAMES
from scarce.engine.eval_files import safe_file_part
from scarce.errors import UserError

Log = Callable[[str], None]


@dataclass(frozen=True)
class PredictOptions:
    """How runs given as members are predicted (``scarce predict``'s options of the same names)."""

    split: str = "test"
    data: DataConfig | None = None  # None: each run's own data
    tta: int = 1
    seed: int = 0
    device: str = "auto"
    batch_size: int = 64
    workers: int = 2


def is_run(path: str | os.PathLike) -> bool:
    """A run directory (``config.yaml`` inside) or a weights file in one, rather than a predictions file."""
    path = Path(path)
    if path.is_file() and path.suffix == ".safetensors":
        return (path.parent / "config.yaml").is_file()
    return path.is_dir() and (path / "config.yaml").is_file()


def members_folder(out_path: str | os.PathLike) -> Path:
    """Where the runs' predictions go: ``final.npz`` -> ``final_members/`` beside it."""
    out = Path(out_path)
    return out.with_name(out.stem + "_members")


def _file_name(index: int, run: str, split: str, tta: int, data: DataConfig | None) -> str:
    path = Path(run).resolve()
    name = safe_file_part(f"{path.parent.name}_{path.stem}" if path.is_file() else path.name, "run")
    if split not in SPLIT_NAMES:  # a folder: with its path's digest, so that /data/holdout/val never
        # overwrites the run's own val predictions (the threshold's) beside it
        digest = hashlib.blake2b(str(Path(split).resolve()).encode(), digest_size=4).hexdigest()
        split = f"{Path(split).name}-{digest}"
    # another dataset's split is named by it: its val never overwrites the run's own val file
    split = f"{Path(data_label(data)).name}_{split}" if data is not None else split
    return f"{index}-{name}-{safe_file_part(split, 'split')}-tta{tta}.npz"


def predict_runs(
    paths: Sequence[str | None],
    split: str,
    options: PredictOptions,
    folder: Path,
    log: Log = print,
    own_data: bool = False,
) -> list[str | None]:
    """``paths`` with every run directory replaced by its predictions file on ``split`` of
    ``options.data`` (``own_data``: of each run's own data, as for the val split a threshold is chosen
    on), written into ``folder``; predictions files and None pass through. A run given twice is
    predicted once, also as its directory and its best.safetensors (the same weights)."""
    from scarce.engine.run_dir import resolve_weights
    from scarce.inference.predict import predict_run, write_predictions

    done: dict[str, str] = {}
    out: list[str | None] = []
    for path in paths:
        if path is None or not is_run(path):
            out.append(None if path is None else str(path))
            continue
        key = os.path.realpath(resolve_weights(path)[1])
        if key not in done:
            folder.mkdir(parents=True, exist_ok=True)
            data = None if own_data else options.data
            target = folder / _file_name(len(done), str(path), split, options.tta, data)
            try:
                preds = predict_run(
                    path, data, split, options.tta, options.device, options.batch_size, options.workers, options.seed
                )
            except UserError as exc:  # among several members, say which one's data lacks the split
                raise UserError(f"member {path}: {exc}") from None
            write_predictions(preds, target)
            log(f"predicted {path} on {split} ({options.tta} view{'s' if options.tta > 1 else ''}): {target}")
            done[key] = str(target)
        out.append(done[key])
    return out


def check_paths(paths: Sequence[str | None]) -> None:
    """Each given path is a predictions file or a run directory (one line naming it otherwise)."""
    for path in paths:
        if path is not None and not Path(path).is_file() and not is_run(path):
            what = "a folder without config.yaml" if Path(path).is_dir() else "not found"
            raise UserError(f"{path}: {what}; expected a predictions file (.npz) or a run directory")


def check_members_once(members: Sequence[str]) -> None:
    """Each member is given once: a run directory and its weights file, or a path given twice, name the
    same model, which would vote twice. Checked before anything is predicted."""
    from scarce.engine.run_dir import resolve_weights

    seen: dict[str, str] = {}
    for member in members:
        key = os.path.realpath(resolve_weights(member)[1] if is_run(member) else member)
        if key in seen:
            same = "" if seen[key] == member else f" (the same model as {seen[key]})"
            raise UserError(f"{member} is listed twice in --members{same}; each model votes once")
        seen[key] = member
