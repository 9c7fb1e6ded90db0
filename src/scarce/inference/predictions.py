"""Predictions files: one model's class probabilities on a set of samples.

A predictions file is an ``.npz`` archive holding only plain arrays (it is read with
``allow_pickle=False``, so opening a file never runs code):

| key | dtype | shape | meaning |
| --- | --- | --- | --- |
| ``probs`` | float32 | ``[N, C]`` | class probabilities, rows sum to 1 |
| ``ids`` | unicode str | ``[N]`` | unique sample ids (e.g. relative image paths) |
| ``classes`` | unicode str | ``[C]`` | class names, in column order |
| ``targets`` | int64 | ``[N]`` | true class index, ``-1`` where unknown |
| ``metadata`` | unicode str | ``[]`` | a JSON object (model, checkpoint, TTA, ...) |

``write_npz_atomic`` writes to a temporary file in the same folder then renames it,
so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scarce.errors import UserError
from scarce.io import atomic_path

REQUIRED_KEYS = ("probs", "ids", "classes", "targets", "metadata")
_SUM_TOLERANCE = 1e-3  # float32 softmax rows sum to 1 within ~1e-6; logits are far off


@dataclass
class Predictions:
    """Arrays of a predictions file; see the module docstring for shapes."""

    probs: np.ndarray
    ids: np.ndarray
    classes: np.ndarray
    targets: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    path: str | None = None  # where it was read from, for error messages

    @property
    def labelled(self) -> np.ndarray:
        """bool ``[N]``: where the true class is known."""
        return self.targets >= 0

    @property
    def name(self) -> str:
        return self.path or "<predictions>"


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` at exactly ``path`` (a temporary one, renamed after)."""
    with open(path, "wb") as f:  # a file object: numpy adds no ".npz" suffix
        np.savez(f, **arrays)


def write_npz_atomic(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an uncompressed ``.npz`` at ``path`` atomically (mode per the umask)."""
    with atomic_path(path) as tmp:
        write_npz(tmp, arrays)
    return Path(path)


def _str_array(values: Sequence[str] | np.ndarray, name: str, unique: bool) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind == "U":
        arr = values
    else:
        arr = np.array([str(v) for v in values], dtype=str)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of str, got shape {arr.shape}")
    if unique and len(np.unique(arr)) != len(arr):
        raise ValueError(f"{name} must be unique")
    return arr


def metadata_array(metadata: Mapping[str, Any] | None) -> np.ndarray:
    """A metadata dict as the 0-d unicode array stored in files."""
    return np.array(json.dumps(dict(metadata or {}), sort_keys=True))


def save_predictions(
    path: str | os.PathLike,
    probs: np.ndarray,
    ids: Sequence[str] | np.ndarray,
    classes: Sequence[str] | np.ndarray,
    targets: Sequence[int] | np.ndarray | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a predictions file (atomically); see the module docstring for the format and
    :func:`prediction_arrays` for the arguments."""
    return write_npz_atomic(path, prediction_arrays(probs, ids, classes, targets, metadata))


def prediction_arrays(
    probs: np.ndarray,
    ids: Sequence[str] | np.ndarray,
    classes: Sequence[str] | np.ndarray,
    targets: Sequence[int] | np.ndarray | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of a predictions file, checked.

    Args:
        probs: ``[N, C]`` probabilities (a torch tensor is accepted too).
        ids: ``N`` unique sample ids; classes: ``C`` unique class names.
        targets: ``N`` class indices, ``-1`` where unknown; ``None``: all unknown.
        metadata: JSON-serialisable dict.
    """
    probs = np.asarray(probs.detach().cpu() if hasattr(probs, "detach") else probs, dtype=np.float32)
    ids_arr = _str_array(ids, "ids", unique=True)
    classes_arr = _str_array(classes, "classes", unique=True)
    n, c = len(ids_arr), len(classes_arr)
    if probs.shape != (n, c):
        raise ValueError(f"probs must be [N, C] = [{n}, {c}] (len(ids), len(classes)), got {list(probs.shape)}")
    tgt = np.full(n, -1, dtype=np.int64) if targets is None else np.asarray(targets, dtype=np.int64)
    if tgt.shape != (n,) or (tgt < -1).any() or (tgt >= c).any():
        raise ValueError(f"targets must be [N] = [{n}] class indices in [-1, {c}), got {tgt.shape}")
    problem = _probs_problem(probs)
    if problem:
        raise ValueError(f"probs {problem}")
    return dict(probs=probs, ids=ids_arr, classes=classes_arr, targets=tgt, metadata=metadata_array(metadata))


def _probs_problem(probs: np.ndarray) -> str | None:
    """Why ``probs`` are not probabilities, or None (catches logits saved as probs)."""
    if not np.isfinite(probs).all():
        return "contain NaN or infinite values"
    if probs.size and probs.min() < 0:
        return f"contain negative values (min {probs.min():.3g}); were logits saved instead?"
    sums = probs.sum(axis=1, dtype=np.float64)
    bad = np.flatnonzero(np.abs(sums - 1.0) > _SUM_TOLERANCE)
    if bad.size:
        return f"rows must sum to 1 (row {bad[0]} sums to {sums[bad[0]]:.4g}); were logits saved instead?"
    return None


def _open_npz(path: str) -> Any:
    hint = "an .npz predictions file (probs, ids, classes, targets, metadata)"
    try:
        data = np.load(path, allow_pickle=False)  # never unpickle: files may come from anywhere
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; expected {hint}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        # numpy calls any file that is not an array archive "pickled" and suggests unpickling it
        reason = "not an .npz archive" if "pickle" in str(exc) else str(exc)
        raise UserError(f"{path}: cannot read it as {hint} ({reason})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise UserError(f"{path}: holds a single array; expected {hint}")
    return data


def _read_arrays(path: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read ``keys`` (all required) from an npz; every failure is a ``UserError``."""
    with _open_npz(path) as data:
        missing = [k for k in keys if k not in data.files]
        if missing:
            found = ", ".join(data.files) or "none"
            raise UserError(f"{path}: missing {', '.join(missing)}; expected keys {', '.join(keys)} (found {found})")
        out = {}
        for key in keys:
            try:
                out[key] = data[key]
            except (ValueError, OSError, zipfile.BadZipFile) as exc:  # object arrays land here
                msg = f"{path}: cannot read {key!r} without unpickling ({exc}); expected plain arrays"
                raise UserError(msg) from None
    return out


def _metadata_object(meta: np.ndarray) -> Any:
    """The JSON value stored as a 0-d str array (None when it is not one)."""
    try:
        return json.loads(str(meta[()])) if meta.dtype.kind == "U" and meta.ndim == 0 else None
    except json.JSONDecodeError:
        return None


def read_metadata(path: str | os.PathLike) -> dict:
    """Only the metadata object of a predictions file ({} when not a JSON object); the arrays
    are not read."""
    value = _metadata_object(_read_arrays(str(path), ["metadata"])["metadata"])
    return value if isinstance(value, dict) else {}


def read_ids(path: str | os.PathLike) -> np.ndarray:
    """Only the ids of a predictions file (its probabilities are not read)."""
    return _read_arrays(str(path), ["ids"])["ids"]


def load_predictions(path: str | os.PathLike) -> Predictions:
    """Read and check a predictions file; any problem raises ``UserError`` naming it."""
    path = str(path)
    a = _read_arrays(path, REQUIRED_KEYS)
    probs, ids, classes, targets, meta = (a[k] for k in REQUIRED_KEYS)
    if classes.ndim != 1 or classes.dtype.kind != "U" or len(np.unique(classes)) != len(classes):
        got = f"{classes.dtype} {list(classes.shape)}"
        raise UserError(f"{path}: 'classes' must be a 1-D array of unique str, got {got}")
    if ids.ndim != 1 or ids.dtype.kind != "U" or len(np.unique(ids)) != len(ids):
        raise UserError(f"{path}: 'ids' must be a 1-D array of unique str, got {ids.dtype} {list(ids.shape)}")
    n, c = len(ids), len(classes)
    if n == 0 or c == 0:
        raise UserError(f"{path}: no {'images' if n == 0 else 'classes'} (N = {n}, C = {c}): nothing to vote on")
    if probs.dtype.kind != "f" or probs.shape != (n, c):
        got = f"{probs.dtype} {list(probs.shape)}"
        raise UserError(f"{path}: 'probs' must be float [N, C] = [{n}, {c}], got {got}")
    if targets.dtype.kind not in "iu" or targets.shape != (n,) or (targets < -1).any() or (targets >= c).any():
        got = f"{targets.dtype} {list(targets.shape)}"
        raise UserError(f"{path}: 'targets' must be int [N] = [{n}] in [-1, {c}), got {got}")
    problem = _probs_problem(probs)
    if problem:
        raise UserError(f"{path}: 'probs' {problem}")
    metadata = _metadata_object(meta)
    if not isinstance(metadata, dict):
        raise UserError(f"{path}: 'metadata' must be a JSON object stored as a 0-d str array")
    probs = probs.astype(np.float32, copy=False)
    return Predictions(probs, ids, classes, targets.astype(np.int64), metadata, path)


def write_predictions_csv(
    path: str | os.PathLike, preds: Predictions, top_k: int = 5, labels: np.ndarray | None = None, atomic: bool = True
) -> Path:
    """Write ``id,label,confidence,top1..top{k}`` rows (class names; ``top`` as ``name:prob``, to
    be split at the last ``:``, since a class name may hold one).

    ``labels`` (``[N]`` class indices) overrides the answer, e.g. a plurality vote;
    ``confidence`` is then the probability ``preds.probs`` gives that class. ``atomic=False``:
    ``path`` is a temporary file that the caller renames (``scarce.io.atomic_paths``).
    """
    probs = preds.probs
    n, c = probs.shape
    k = max(0, min(int(top_k), c))
    label = probs.argmax(axis=1) if labels is None else np.asarray(labels, dtype=np.int64)
    if label.shape != (n,) or (n and (label.min() < 0 or label.max() >= c)):
        raise ValueError(f"labels must be [N] = [{n}] class indices in [0, {c}), got {list(label.shape)}")
    top = np.empty((n, k), dtype=np.int64)
    for lo in range(0, n, 4096):  # in chunks: argpartition makes [rows, C] temporaries
        chunk = probs[lo : lo + 4096]
        # argpartition then sort only the k kept columns: O(C) per row, not O(C log C).
        part = np.argpartition(-chunk, k - 1, axis=1)[:, :k] if k else np.empty((len(chunk), 0), np.int64)
        order = np.argsort(-np.take_along_axis(chunk, part, axis=1), axis=1, kind="stable")
        top[lo : lo + 4096] = np.take_along_axis(part, order, axis=1)
    top_p = np.take_along_axis(probs, top, axis=1)
    conf = probs[np.arange(n), label]
    path = Path(path)
    if not atomic:
        _write_csv_rows(path, preds, label, conf, top, top_p)
        return path
    with atomic_path(path) as tmp:
        _write_csv_rows(tmp, preds, label, conf, top, top_p)
    return path


def _write_csv_rows(
    path: Path, preds: Predictions, label: np.ndarray, conf: np.ndarray, top: np.ndarray, top_p: np.ndarray
) -> None:
    n, k = len(label), top.shape[1]
    # surrogateescape: ids of files whose names are not UTF-8 are written as their raw bytes
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        w = csv.writer(f)
        w.writerow(["id", "label", "confidence", *(f"top{j + 1}" for j in range(k))])
        for i in range(n):
            tops = (f"{preds.classes[top[i, j]]}:{top_p[i, j]:.6f}" for j in range(k))
            w.writerow([preds.ids[i], preds.classes[label[i]], f"{conf[i]:.6f}", *tops])
