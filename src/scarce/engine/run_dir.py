"""The run directory as a resource: what may be written where, by whom, and what a resume needs.

* ``--out`` is a new or empty folder, or a scarce run (it has ``config.yaml``): a folder of the
  user's is never written into, so no file of theirs is replaced or deleted.
* One process trains into a run directory at a time (an exclusive lock on ``.lock``).
* The data paths a run stores are absolute, so ``evaluate``/``report`` from another working
  directory read the same files. What a resume may change: :mod:`scarce.engine.resume`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO

from scarce.config import Config
from scarce.errors import UserError

LOCK_FILE = ".lock"


def default_run_dir(name: str, parent: Path = Path("runs")) -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>``, claimed by creating it: runs started in the same second
    (an ablation loop launching its arms at once) get ``-2``, ``-3``, ... instead of one folder."""
    import time

    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            path = parent / (stem if n == 1 else f"{stem}-{n}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise UserError(f"--out: cannot create a run directory under {parent} ({exc.strerror}); give --out") from None
    raise UserError(f"{parent}: 999 runs named {stem}* already; give --out")


@contextlib.contextmanager
def new_run_dir(out: str | os.PathLike | None, name: str) -> Iterator[Path]:
    """``out``, or a :func:`default_run_dir` claimed for the block and removed again when the
    block fails before writing anything into it (no empty folders from a refused config)."""
    if out is not None:
        yield Path(out)
        return
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # each process would claim a folder of its own
        raise UserError("under torchrun, give --out RUN_DIR: every process must write to the same run directory")
    path = default_run_dir(name)
    try:
        yield path
    except BaseException:
        if path.is_dir() and all(_scarce_leftover(p.name) for p in path.iterdir()):
            shutil.rmtree(path, ignore_errors=True)
        raise


def check_run_dir(run_dir: Path, resume: bool) -> bool:
    """Whether to resume: ``--resume`` on a run killed before its first checkpoint starts fresh."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir}: is a file, expected a run directory")
    is_run = (run_dir / "config.yaml").is_file()
    if not resume and run_dir.is_dir() and not is_run and any(not _scarce_leftover(p.name) for p in run_dir.iterdir()):
        raise UserError(
            f"--out {run_dir}: a folder with other files in it and no scarce run (no config.yaml); "
            f"choose a new or empty folder"
        )
    finished = (run_dir / "summary.json").is_file()
    if not resume and ((run_dir / "state.json").exists() or finished):
        raise UserError(f"run directory {run_dir} already holds a run; use --resume {run_dir} or another --out")
    if resume and not is_run:
        resume_config_path(run_dir, f"--resume {run_dir}")  # says why
    if resume and not (run_dir / "state.json").is_file() and finished:
        raise UserError(
            f"--resume {run_dir}: the run finished and dropped its resumable checkpoint; to extend "
            f"runs later, train them with --keep-checkpoint (checkpoint.keep_at_end=true)"
        )
    if resume and not (run_dir / "state.json").is_file():
        print(f"--resume {run_dir}: no epoch had finished; starting from epoch 0", flush=True)
        return False
    return resume


def resume_config_path(run_dir: Path, what: str) -> str:
    """``run_dir``'s config.yaml, which a resume trains on; one line naming ``what`` (the option or
    argument that gave ``run_dir``) when there is no such run directory."""
    if not run_dir.is_dir():
        raise UserError(f"{what}: no such run directory")
    if not (run_dir / "config.yaml").is_file():
        raise UserError(
            f"{what}: no config.yaml there (not a scarce run directory, or the run was "
            f"stopped before it started: run the original command again)"
        )
    return str(run_dir / "config.yaml")


def _scarce_leftover(name: str) -> bool:
    """What a run killed before writing config.yaml may leave: its lock, its atomic-write temp files."""
    return name == LOCK_FILE or (name.startswith(".") and name.endswith(".tmp"))


def _busy(run_dir: Path, holder: str) -> UserError:
    return UserError(
        f"run directory {run_dir}: another scarce process (pid {holder}) is training into it; "
        f"wait for it or choose another --out"
    )


def check_not_running(run_dir: Path) -> None:
    """Refuse first when another process trains into ``run_dir`` (holds its lock): its checkpoint
    would otherwise read as a run to resume. Rank 0 only: other ranks find rank 0's lock."""
    path = run_dir / LOCK_FILE
    if not path.is_file() or int(os.environ.get("RANK", "0")) != 0:
        return
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(run_dir, handle.read().strip() or "unknown") from None
        fcntl.flock(handle, fcntl.LOCK_UN)


class RunLock:
    """An exclusive ``flock`` on ``RUN_DIR/.lock`` for the life of a training process; a second
    process exits with a one-line error naming the first one's pid. The kernel drops the lock
    when the holder dies, so a killed run never leaves a stale lock."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE
        self.handle: IO | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise _busy(self.path.parent, holder) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


def absolute_data_paths(cfg: Config) -> Config:
    """``cfg`` with its data folders made absolute (built-in dataset names stay names), and a train
    folder beside the default demo name saved as no dataset (a Config built without load_config)."""
    from scarce.config import folders_only
    from scarce.data.splits import BUILTIN_DATASETS

    data = folders_only(cfg.data)

    def absolute(path: str | None) -> str | None:
        return str(Path(path).resolve()) if path else path

    name = data.name if data.name in BUILTIN_DATASETS else absolute(data.name)
    return replace(
        cfg,
        data=replace(
            data,
            name=name,
            train=absolute(data.train),
            val=absolute(data.val),
            test=absolute(data.test),
            root=absolute(data.root),
        ),
    )


def resolve_weights(path: str | Path) -> tuple[Path, Path]:
    """A run directory (-> its best.safetensors) or a weights file -> absolute (run dir, weights):
    predictions files record them, and are compared from other working directories."""
    path = Path(os.path.abspath(path))
    if path.is_dir():
        weights = path / "best.safetensors"
        if not weights.is_file():
            raise UserError(f"{path}: no best.safetensors (not a finished scarce run directory)")
        return path, weights
    if path.suffix != ".safetensors" or not path.is_file():
        raise UserError(f"{path}: expected a scarce run directory or a .safetensors file inside one")
    return path.parent, path
