"""Crash-safe file writes: every file scarce writes goes to a temporary name in
the same folder and is renamed over the target, so a kill never leaves a
half-written file where a good one stood (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported on first use: `scarce --help` stays fast
    import torch

from scarce.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    with atomic_paths([path]) as (tmp,):
        yield tmp


@contextmanager
def atomic_paths(paths: list[str | os.PathLike]) -> Iterator[list[Path]]:
    """Temporary paths beside each of ``paths`` (unique names), renamed onto them together
    once all are written; an error while writing removes every temporary file and replaces
    nothing.

    Files that belong together (an ensemble's ``.npz`` and its CSV) are all complete before
    the first rename, and the old versions of the later ones are removed first: a kill or a
    failed rename never leaves a new file beside a stale partner (at worst one file, old or
    new, without the rest).
    """
    targets = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        for path in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmps.append(Path(tmp))
        yield list(tmps)
        for tmp in tmps:
            # after writing: a writer may replace the file (safetensors does), and mkstemp's 0600
            # would surprise users sharing run dirs
            os.chmod(tmp, 0o666 & ~_UMASK)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        for path in targets[1:]:
            path.unlink(missing_ok=True)
        for tmp, path in zip(tmps, targets):
            os.replace(tmp, path)
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise


def check_writable_dir(path: str | os.PathLike, option: str) -> None:
    """Refuse, with one :class:`UserError` naming ``option``, a folder that could not be created
    or written, before any work whose results would go there. Creates nothing (a refused start
    leaves no folder behind)."""
    folder = Path(path).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option} {path}: cannot write there ({existing} is a file, not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):  # also false on a read-only file system
        raise UserError(f"{option} {path}: cannot write there ({existing} is not writable)")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one line; a kill mid-write can only truncate the last line, which readers skip."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    rows = []
    if not Path(path).is_file():
        return rows
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line from a killed run
    return rows


def read_json(path: str | os.PathLike, schema: dict[str, type | tuple[type, ...]] | None = None):
    """A JSON file's content; with ``schema`` ({key: type}), a mapping whose keys all exist with
    those types (a hand-edited file fails in one line naming the file and the key)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if schema is not None:
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a JSON object, got {type(data).__name__}")
        for key, expected in schema.items():
            ok = (
                key in data
                and isinstance(data[key], expected)
                and not (expected is int and isinstance(data[key], bool))
            )
            if not ok:
                names = "/".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
                raise UserError(
                    f"{path}: key '{key}' should be {names}, got "
                    f"{type(data[key]).__name__ if key in data else 'nothing'} (a damaged or edited file?)"
                )
    return data


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """Write a safetensors file atomically (contiguous CPU copies; shared storage un-shared)."""
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
        _sort_metadata(tmp)


def tensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (its header only; no tensor is read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def _sort_metadata(path: str | os.PathLike) -> None:
    """safetensors writes the metadata in a per-process hash order, so two runs' equal weights
    differed byte for byte (``cmp``, ``sha256sum``); rewritten in key order, in place (offsets
    count from the header's end, and the sorted header is no longer: padded to its length)."""
    with open(path, "r+b") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        if len(header.get("__metadata__") or {}) < 2:
            return
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) <= size:  # compact JSON of the same content: always; a longer one would move the data
            f.seek(8)
            f.write(text.ljust(size, b" "))


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (a pickle, garbage) is refused."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises several types for bad headers
        raise UserError(f"{path}: not a valid safetensors file ({type(exc).__name__})") from None
