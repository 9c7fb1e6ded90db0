"""What a run writes at the end of an epoch: best weights when they improve, the resumable
checkpoint by cadence (and its in-memory snapshot in between, for signals)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from scarce.engine.checkpoint import save_checkpoint, save_weights, write_checkpoint
from scarce.engine.faults import SignalGuard, write_errors_stop_run

if TYPE_CHECKING:
    from scarce.engine.prepare import Run


# Below this many val images per class, val top-1 cannot rank epochs: one image is >= 0.5 points
# per class and the top pick is mostly noise (the demo's 10/class picked epoch 14 of 45).
MIN_VAL_PER_CLASS_TO_SELECT = 20


def resolve_select(setting: str, val_images: int, num_classes: int, patience: int) -> str:
    """``checkpoint.select`` -> 'best' or 'last' (see the config key)."""
    if setting != "auto":
        return setting
    too_few = val_images < MIN_VAL_PER_CLASS_TO_SELECT * num_classes
    return "last" if too_few and not patience else "best"


def kept_weights(summary: dict) -> str:
    """``"last"`` or ``"best"``: which weights a finished run's best.safetensors holds, from its
    summary (runs from before ``checkpoint.select`` kept the best)."""
    return "last" if summary.get("select") == "last" else "best"


def save_best(run: Run, epoch: int, scores: dict) -> None:
    """best.safetensors, written when an evaluated epoch beats the best so far (raw or EMA
    weights, whichever scored higher), or at every evaluated epoch with ``run.select ==
    'last'``; without a val split, the weights of every epoch."""
    if "val_top1" not in scores:
        if "val" in run.loaders:
            return  # an epoch without evaluation (eval_every > 1) cannot be "best"
        name, module = ("ema", run.ema.module) if run.ema is not None else ("model", run.model)
        run.best = {"top1": -1.0, "epoch": epoch, "weights": name}
        save_weights(module, run.run_dir / "best.safetensors", {"epoch": epoch, "source": name})
        return
    candidates = [("model", run.model, scores["val_top1"])]
    if run.ema is not None:
        candidates.append(("ema", run.ema.module, scores["val_top1_ema"]))
    name, module, top1 = max(candidates, key=lambda c: c[2])
    if top1 > run.best["top1"] or run.select == "last":
        run.best = {"top1": top1, "epoch": epoch, "weights": name}
        save_weights(module, run.run_dir / "best.safetensors", {"epoch": epoch, "source": name})


def save_last(run: Run, epoch: int) -> None:
    """last(_ema).safetensors and the resumable checkpoint of the end of ``epoch``."""
    save_weights(run.model, run.run_dir / "last.safetensors", {"epoch": epoch, "source": "model"})
    if run.ema is not None:
        save_weights(run.ema.module, run.run_dir / "last_ema.safetensors", {"epoch": epoch, "source": "ema"})
    save_checkpoint(run.run_dir, epoch, run.model, run.optimizer, run.ema, run.step.scaler, extra_state(run))
    run.snapshot, run.checkpoint_time = None, time.monotonic()


def extra_state(run: Run) -> dict:
    return {"global_step": run.global_step, "best": dict(run.best)}


def checkpoint_due(run: Run, epoch: int, end: int) -> bool:
    """The last epoch of this process, every ``checkpoint.every_epochs``, or ``every_seconds`` since the last."""
    every = run.cfg.checkpoint
    return (
        epoch + 1 == end
        or (every.every_epochs > 0 and (epoch + 1) % every.every_epochs == 0)
        or time.monotonic() - run.checkpoint_time >= every.every_seconds
    )


def save_on_signal(run: Run) -> None:
    """After SIGINT/SIGTERM: write the in-memory state of the last completed epoch, if newer
    than the checkpoint on disk (the epoch in progress is abandoned)."""
    if run.snapshot is None or not run.info.is_main:
        return
    with (
        SignalGuard() as guard,
        guard.writing(),
        write_errors_stop_run(run.run_dir, f"the checkpoint of epoch {run.snapshot['epoch']}"),
    ):
        write_checkpoint(run.run_dir, run.snapshot)
    run.snapshot = None
