"""How a training run stops on a fault or a signal without losing its last good checkpoint.

* A non-finite loss or a failed write (full disk) raises :class:`RunFault`: one line,
  exit code 3. Nothing of the failed epoch is kept; ``state.json`` still points at the
  last complete checkpoint folder (torn newer folders are removed to free space).
* SIGINT / SIGTERM raise :class:`Interrupted` in the main thread (exit code 128 + signal:
  130, 143). The epoch in progress is abandoned, so the resume restarts it from the
  last completed epoch and stays bit-identical; a signal that arrives while a checkpoint
  is being written waits until the write is complete.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError

from scarce.errors import UserError
from scarce.io import read_json

EXIT_FAULT = 3


class RunFault(UserError):
    """The run stopped on a fault (non-finite loss, full disk); the CLI exits with 3."""

    exit_code = EXIT_FAULT


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``exit_code`` is 128 + the signal number."""

    def __init__(self, message: str, signum: int, quiet: bool = False):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
        self.quiet = quiet  # the other ranks of a torchrun run: rank 0 alone says what is kept


def resume_command(run_dir: Path, world_size: int = 1, per_node: int | None = None) -> str:
    """How to continue the run: under torchrun with as many processes (``per_node`` on each
    node; default: this launch's) when it trained so (a resume on another number of processes
    is refused: the global batch would change)."""
    if world_size <= 1:
        return f"scarce train --resume {run_dir}"
    per_node = per_node or int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    nodes = f" on each of {world_size // per_node} nodes" if per_node < world_size else ""
    return f"torchrun --nproc_per_node {per_node} -m scarce train --resume {run_dir}{nodes}"


def checkpoint_epoch(run_dir: Path) -> int | None:
    """The epoch of ``run_dir``'s checkpoint; None without one (or with an unreadable state.json)."""
    if not (run_dir / "state.json").is_file():
        return None
    try:
        epoch = read_json(run_dir / "state.json")["epoch"]
    except (UserError, KeyError, TypeError):
        return None
    return epoch if isinstance(epoch, int) else None


def kept_checkpoint(run_dir: Path, epoch: int | None = None) -> str:
    """What survives in ``run_dir``, for the one-line messages; ``epoch``: its
    :func:`checkpoint_epoch` where the caller has read it already (None: read here)."""
    if not (run_dir / "state.json").is_file():
        return "no epoch had finished, so there is no checkpoint"
    epoch = checkpoint_epoch(run_dir) if epoch is None else epoch
    if epoch is None:
        return f"{run_dir / 'state.json'} is kept as it was"
    return f"the checkpoint of epoch {epoch} is kept ({run_dir / 'state.json'})"


def remove_torn_checkpoints(run_dir: Path) -> None:
    """Delete checkpoint folders that ``state.json`` does not point at (a write failed midway)."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return
    current = None
    if (run_dir / "state.json").is_file():
        try:
            current = Path(read_json(run_dir / "state.json")["checkpoint"]).name
        except (UserError, KeyError, TypeError):
            return  # cannot tell which folder is good: touch nothing
    for old in folder.iterdir():
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def write_errors_stop_run(run_dir: Path, what: str, world_size: int) -> Iterator[None]:
    """Turn a failed write (``OSError``; safetensors reports I/O as ``SafetensorError``) into
    :class:`RunFault`, after removing the torn checkpoint folder; ``world_size``: the run's
    processes, so that a torchrun run is told to resume under torchrun."""
    try:
        yield
    except (OSError, SafetensorError) as exc:
        remove_torn_checkpoints(run_dir)
        full = getattr(exc, "errno", None) == 28 or "os error 28" in str(exc)
        detail = "no space left on device" if full else str(exc).splitlines()[0]
        raise RunFault(
            f"cannot write {what} in {run_dir}: {detail}; {kept_checkpoint(run_dir)}; "
            f"free space and resume with: {resume_command(run_dir, world_size)}"
        ) from None


class SignalGuard:
    """Within ``with``: SIGINT/SIGTERM raise :class:`Interrupted` in the main thread, except
    inside :meth:`writing`, where they are held until the checkpoint is complete."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.pending: int | None = None
        self.busy = False
        self.previous: dict = {}

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():  # signal.signal needs it
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame) -> None:
        self.pending = signum
        if not self.busy:
            raise Interrupted(signal.Signals(signum).name, signum)

    @contextmanager
    def writing(self) -> Iterator[None]:
        self.busy = True
        try:
            yield
        finally:
            self.busy = False
        if self.pending is not None:
            raise Interrupted(signal.Signals(self.pending).name, self.pending)
