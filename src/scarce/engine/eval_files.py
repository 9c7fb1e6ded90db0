"""Where ``scarce evaluate`` writes its JSON in the run directory: one file per split, data,
folder and weights, so scoring one thing never replaces the score of another."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from scarce.config import DataConfig, data_label
from scarce.data.splits import locate_split


def safe_file_part(text: str, empty: str = "folder") -> str:
    """``text`` as part of a file name: runs of other characters become ``_`` (no sub-folders)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or empty


def _safe_name(path: str) -> str:
    return safe_file_part(Path(path).expanduser().resolve().name)


def eval_file_name(split: str, other_data: str | None = None, weights: str = "best") -> str:
    """``eval_<split>.json`` for a split of the run's own data, ``eval_<data>_<split>.json`` for one
    of other data (so scoring another dataset does not replace the run's own score); for an image
    folder given as the split, ``eval_folder_<name>.json``; weights other than the run's best add
    ``_<weights>`` (``eval_test_last_ema.json``). Names are made safe as file names, so nothing is
    written into sub-folders of the run directory."""
    tag = "" if weights == "best" else f"_{_safe_name(weights)}"
    if split not in ("train", "val", "test"):
        return f"eval_folder_{_safe_name(split)}{tag}.json"
    return f"eval_{split}{tag}.json" if other_data is None else f"eval_{_safe_name(other_data)}_{split}{tag}.json"


def scored_source(data: DataConfig, split: str, own: bool) -> str:
    """What an evaluation scored, as one string: the folder read, absolute (``locate_split``'s
    answer, so ``--split extra`` of two roots differ); else ``run:<split>`` for the run's own data,
    ``<root or name>:<split>`` for other data."""
    source = locate_split(data, split)
    if source.folder is not None:
        return str(source.folder.expanduser().resolve())
    if own:
        return f"run:{split}"
    root = source.root or Path(data_label(data))
    return f"{root.expanduser().resolve() if root.is_dir() else data_label(data)}:{split}"


def free_eval_path(path: Path, source: str) -> Path:
    """``path``, unless it holds the score of another source (two folders of one name): then
    ``<stem>-<hash of source>.json``, so one folder's score never replaces another's."""
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("source", source)
    except (OSError, ValueError, AttributeError):  # none yet (or unreadable: replaced as before)
        return path
    if recorded == source:
        return path
    return path.with_name(f"{path.stem}-{hashlib.sha256(source.encode()).hexdigest()[:8]}.json")
