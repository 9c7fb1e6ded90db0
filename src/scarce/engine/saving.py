"""What a run writes at the end of an epoch: best weights when they improve, the resumable
checkpoint by cadence (and its in-memory snapshot in between, for signals)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from scarce.engine.checkpoint import (
    record_best_in_checkpoint,
    save_checkpoint,
    save_state_weights,
    save_weights,
    write_checkpoint,
)
from scarce.engine.faults import SignalGuard, write_errors_stop_run
from scarce.models.heads import CosineHeadModel

if TYPE_CHECKING:
    from scarce.config import Config
    from scarce.engine.prepare import Run


# Below this many val images per class, val top-1 cannot rank epochs: one image is >= 0.5 points
# per class and the top pick is mostly noise (the demo's 10/class picked epoch 14 of 45).
MIN_VAL_PER_CLASS_TO_SELECT = 20
# An earlier epoch replaces the final one only when its val top-1 is higher by more than this many
# binomial standard errors of a val accuracy: the highest of 60 noisy evaluations is a lucky one
# (Fashion-MNIST, 500 val images: best-on-val picked epoch 160 of 300 at 85.0 % val, 81.8 % test,
# where the final weights scored 84.0; BENCHMARKS.md session 16).
CLEAR_MARGIN_Z = 2.0


def resolve_select(setting: str, val_images: int, num_classes: int, patience: int) -> str:
    """``checkpoint.select`` -> 'best', 'last' or 'clear_best' (see the config key); a run that
    ends with 'clear_best' keeps 'best' or 'last' (:func:`settle_clear_best`)."""
    if setting != "auto":
        return setting
    if patience:
        return "best"  # early stopping: the best epoch is the point
    too_few = val_images < MIN_VAL_PER_CLASS_TO_SELECT * num_classes
    return "last" if too_few else "clear_best"


def clear_margin(top1: float, val_images: int, z: float = CLEAR_MARGIN_Z) -> float:
    """How much higher than the final epoch's an earlier val top-1 must be to count as a peak."""
    return z * (top1 * (1 - top1) / max(val_images, 1)) ** 0.5


def settle_clear_best(run: Run, final: dict) -> str | None:
    """At the end of a 'clear_best' run: keep the best epoch's weights if its val top-1 beats the
    final epoch's (``final``: its metrics row) by :func:`clear_margin`, else write the final
    epoch's (raw or EMA, whichever scored higher on val) to best.safetensors. Sets ``run.select``
    to what was kept; returns a one-line note, or None for other runs."""
    if run.select != "clear_best" or "val_top1" not in final:
        return None
    name, top1 = max((("model", final["val_top1"]), ("ema", final.get("val_top1_ema", -1.0))), key=lambda c: c[1])
    n_val = len(run.data.splits["val"].ids)
    margin = clear_margin(run.best["top1"], n_val)
    if run.best["epoch"] == final["epoch"]:
        run.select = "last"
        return f"kept the final weights (epoch {final['epoch']}): also the best on val"
    if run.best["top1"] - top1 > margin:
        run.select = "best"
        return (
            f"kept epoch {run.best['epoch']}: its val top-1 {run.best['top1']:.4f} beats the final "
            f"{top1:.4f} by more than {margin:.4f} ({CLEAR_MARGIN_Z:g} standard errors of {n_val} images)"
        )
    module = run.ema.module if name == "ema" else run.model
    save_weights(module, run.run_dir / "best.safetensors", {"epoch": final["epoch"], "source": name})
    note = (
        f"kept the final weights (epoch {final['epoch']}, val top-1 {top1:.4f}): the best epoch "
        f"{run.best['epoch']} ({run.best['top1']:.4f}) is within {margin:.4f} of it, noise for {n_val} val images"
    )
    run.select, run.best = "last", {"top1": top1, "epoch": final["epoch"], "weights": name}
    record_best_in_checkpoint(run.run_dir, run.best)
    return note


def kept_weights(summary: dict) -> str:
    """``"last"`` or ``"best"``: which weights a finished run's best.safetensors holds, from its
    summary (runs from before ``checkpoint.select`` kept the best)."""
    return "last" if summary.get("select") == "last" else "best"


def evaluated_epoch(cfg: Config, epoch: int) -> bool:
    """Whether ``epoch`` (0-based) is scored on val: every ``eval_every``-th and the last."""
    return (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs


def save_best(run: Run, epoch: int, scores: dict) -> None:
    """best.safetensors, written when an evaluated epoch beats the best so far (raw or EMA
    weights, whichever scored higher). With ``run.select == 'last'`` every evaluated epoch, and
    without a val split every epoch, is the best: see :func:`keep_latest`."""
    if "val_top1" not in scores:
        if "val" in run.loaders:
            return  # an epoch without evaluation (eval_every > 1) cannot be "best"
        keep_latest(run, epoch, "ema" if run.ema is not None else "model", -1.0)
        return
    candidates = [("model", run.model, scores["val_top1"])]
    if run.ema is not None:
        candidates.append(("ema", run.ema.module, scores["val_top1_ema"]))
    name, module, top1 = max(candidates, key=lambda c: c[2])
    if run.select == "last":
        keep_latest(run, epoch, name, top1)
    elif top1 > run.best["top1"]:  # clear_best: as best until the end
        run.best = {"top1": top1, "epoch": epoch, "weights": name}
        save_weights(module, run.run_dir / "best.safetensors", {"epoch": epoch, "source": name})


def keep_latest(run: Run, epoch: int, name: str, top1: float) -> None:
    """Record ``epoch``'s weights as the best. The next epoch's would overwrite the file (45 MB
    for a ResNet-18, a large share of a fast epoch), so it is written with the epoch's checkpoint
    (:func:`save_last`, :func:`save_on_signal`): only if the next epoch is not scored (its
    weights are never the best), it is written now, while the epoch's weights are at hand."""
    run.best, run.best_unsaved = {"top1": top1, "epoch": epoch, "weights": name}, True
    if "val" in run.loaders and not evaluated_epoch(run.cfg, epoch + 1):
        write_unsaved_best(run)


def write_unsaved_best(run: Run, snapshot: dict | None = None) -> None:
    """best.safetensors from the live weights (those of the epoch :func:`keep_latest` recorded), or
    from ``snapshot`` (:func:`capture_state` of that epoch) once training has moved past it."""
    if not run.best_unsaved:
        return
    name, path = run.best["weights"], run.run_dir / "best.safetensors"
    metadata = {"epoch": run.best["epoch"], "source": name}
    if snapshot is None:
        save_weights(run.ema.module if name == "ema" else run.model, path, metadata)
    else:
        save_state_weights(snapshot[name], isinstance(run.model, CosineHeadModel), path, metadata)
    run.best_unsaved = False


def save_last(run: Run, epoch: int) -> None:
    """best.safetensors if unsaved, last(_ema).safetensors and the resumable checkpoint of the end
    of ``epoch``; best first, so that state.json never records a best its file does not hold yet."""
    write_unsaved_best(run)
    save_weights(run.model, run.run_dir / "last.safetensors", {"epoch": epoch, "source": "model"})
    if run.ema is not None:
        save_weights(run.ema.module, run.run_dir / "last_ema.safetensors", {"epoch": epoch, "source": "ema"})
    save_checkpoint(run.run_dir, epoch, run.model, run.optimizer, run.ema, run.step.scaler, extra_state(run))
    run.snapshot, run.checkpoint_time = None, time.monotonic()


def extra_state(run: Run) -> dict:
    """What a checkpoint keeps besides tensors: counters, the best score, and the wall time so far
    (so a resumed run's summary counts every segment)."""
    return {
        "global_step": run.global_step,
        "best": dict(run.best),
        "seconds": run.seconds_before + time.perf_counter() - run.segment_start,
        "segments": run.segments,
        "timings": dict(run.timings),
    }


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
        write_errors_stop_run(run.run_dir, f"the checkpoint of epoch {run.snapshot['epoch']}", run.info.world_size),
    ):
        # an unsaved best is the snapshot's epoch: a later epoch would have replaced or written it
        write_unsaved_best(run, run.snapshot)
        write_checkpoint(run.run_dir, run.snapshot)
    run.snapshot = None
