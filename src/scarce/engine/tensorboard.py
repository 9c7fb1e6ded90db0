"""Optional TensorBoard logging of the per-epoch record (``log.tensorboard: true``).

TensorBoard is never required: without the ``tensorboard`` package the switch
prints one note and training goes on. The record logged is exactly the line
written to ``metrics.jsonl``, so both always agree.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOG_SUBDIR = "tensorboard"


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def _summary_writer(log_dir: str) -> Any:
    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

    return SummaryWriter(log_dir=log_dir)


class TensorBoardLogger:
    """Writes every numeric field of an epoch record as a scalar at ``step = epoch + 1``.

    ``writer_factory(log_dir) -> SummaryWriter``-like object (``add_scalar``, ``flush``,
    ``close``); the default is torch's ``SummaryWriter``.
    """

    def __init__(self, log_dir: str | Path, writer_factory: Callable[[str], Any] | None = None):
        self.writer = (writer_factory or _summary_writer)(str(log_dir))

    def log(self, record: dict) -> None:
        step = int(record["epoch"]) + 1
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(_tag(key), value, step)
        self.writer.flush()  # one flush per epoch: a killed run keeps what it logged

    def close(self) -> None:
        self.writer.close()


def _tag(key: str) -> str:
    """Group scalars in TensorBoard: val/top1, val/top1_ema, train/loss, train/lr, ..."""
    if key.startswith("val_"):
        return "val/" + key[4:]
    return "train/" + key.removeprefix("train_")


class NullLogger:
    """Stands in when TensorBoard is off, so the trainer calls ``log``/``close`` unconditionally."""

    def log(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


def open_tensorboard(enabled: bool, run_dir: str | Path, is_main: bool = True) -> TensorBoardLogger | NullLogger:
    """A logger into ``RUN_DIR/tensorboard`` when enabled, on the main process, and installed."""
    if not enabled or not is_main:
        return NullLogger()
    if not tensorboard_available():
        print(
            "log.tensorboard: the tensorboard package is not installed (pip install tensorboard); "
            "training without TensorBoard logs",
            flush=True,
        )
        return NullLogger()
    return TensorBoardLogger(Path(run_dir) / LOG_SUBDIR)
