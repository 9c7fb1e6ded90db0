"""A whole run: config -> data, model, loss, optimizer -> epochs -> run directory."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from scarce.config import Config
from scarce.data import set_loader_epoch
from scarce.data.seeding import sample_seed, seed_everything
from scarce.engine.amp_fallback import can_fall_back, fall_back_to_fp32, keep_initial_state
from scarce.engine.checkpoint import capture_state, drop_checkpoint
from scarce.engine.describe import startup_lines
from scarce.engine.distributed import broadcast_buffers, broadcast_object, cleanup, wait_for_main
from scarce.engine.factories import probs_function
from scarce.engine.faults import (
    Interrupted,
    RunFault,
    SignalGuard,
    checkpoint_epoch,
    kept_checkpoint,
    resume_command,
    write_errors_stop_run,
)
from scarce.engine.loop import NonFiniteLossError, check_finite_weights, evaluate, recompute_bn_stats, train_one_epoch
from scarce.engine.prepare import Run, prepare_run
from scarce.engine.resume import RESUMES_FILE, check_resume_config, describe_changes, finished_run, trim_metrics
from scarce.engine.run_dir import RunLock, absolute_data_paths, check_not_running, check_run_dir
from scarce.engine.saving import (
    checkpoint_due,
    evaluated_epoch,
    extra_state,
    save_best,
    save_last,
    save_on_signal,
    settle_clear_best,
)
from scarce.engine.startup import write_run_info
from scarce.engine.tensorboard import open_tensorboard
from scarce.errors import duration_text
from scarce.io import append_jsonl, atomic_write_json, check_writable_dir, read_jsonl


def validate_epoch(run: Run) -> dict:
    """Val top-1 of the raw model and of the EMA weights. With ``model.precise_bn``, both get
    their BN statistics recomputed first (the EMA's buffers average the raw model's lagging ones:
    on the demo they scored the EMA at 0.2 where its weights were worth 0.68)."""
    if "bn" in run.loaders:
        for module in [run.model] + ([run.ema.module] if run.ema is not None else []):
            recompute_bn_stats(module, run.loaders["bn"], run.preprocess)
    if "val" not in run.loaders:
        return {}
    probs_fn, n = probs_function(run.cfg), len(run.data.classes)

    def top1(model) -> float:
        return evaluate(model, run.loaders["val"], run.preprocess, n, run.info, run.hardware.amp, probs_fn)["top1"]

    out = {"val_top1": top1(run.model)}
    if run.ema is not None:
        out["val_top1_ema"] = top1(run.ema.module)
    return out


def run_epochs(
    run: Run, progress: bool = True, stop_after: int | None = None, guard: SignalGuard | None = None
) -> None:
    """Epochs ``start_epoch..``; a signal (``guard``) never splits a checkpoint write.

    Between checkpoints, the state at the end of the last epoch is kept in memory
    (``run.snapshot``) so that a signal can still save it (:func:`save_on_signal`).
    """
    guard = guard or SignalGuard()
    cfg = run.cfg
    end = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    tb = open_tensorboard(cfg.log.tensorboard, run.run_dir, run.info.is_main)  # a no-op unless enabled
    run.checkpoint_time = time.monotonic()
    keep_initial_state(run)
    loop_start = time.perf_counter()
    try:
        for epoch in range(run.start_epoch, end):
            stats = train_epoch(run, epoch, progress)
            broadcast_buffers(run.model, run.info)
            if run.ema is not None:
                broadcast_buffers(run.ema.module, run.info)
            began = time.perf_counter()
            scores = validate_epoch(run) if evaluated_epoch(cfg, epoch) else {}
            run.timings["val"] += time.perf_counter() - began
            run.timings["train"] += stats["seconds"]
            if run.info.is_main:
                # what is left of this segment at its mean pace so far (a one-epoch bar says nothing of it)
                left = (time.perf_counter() - loop_start) / (epoch + 1 - run.start_epoch) * (end - epoch - 1)
                tb.log(record_epoch(run, epoch, stats, scores, end, guard, left))
            # rank 0 alone decides (it alone records the epoch); sharing the decision is also the sync point
            run.stopped_early = broadcast_object(run.stopped_early, run.info)
            if run.stopped_early:
                if run.info.is_main:
                    print(run.stopped_early, flush=True)
                break
    finally:  # a fault or a signal must not leave the writer's file and thread open
        tb.close()


def train_epoch(run: Run, epoch: int, progress: bool) -> dict:
    """One epoch of training -> its stats. A non-finite loss or weights under the bf16 that
    ``amp=auto`` chose trains the epoch again from its start in fp32
    (:mod:`scarce.engine.amp_fallback`); otherwise they stop the run."""
    try:
        stats = _train_epoch_once(run, epoch, progress)
    except NonFiniteLossError as exc:
        if not can_fall_back(run):
            raise
        with write_errors_stop_run(run.run_dir, "environment.json", run.info.world_size):
            print(fall_back_to_fp32(run, epoch, str(exc)), flush=True)
        stats = _train_epoch_once(run, epoch, progress)
    run.initial_state = None  # a copy of the whole state, needed only to retry epoch 0
    return stats


def _train_epoch_once(run: Run, epoch: int, progress: bool) -> dict:
    """Seeded by the epoch alone, so a retry repeats the epoch's data order and augmentation."""
    cfg = run.cfg
    rank = run.info.rank  # each rank its own draws: the same masks on every shard would correlate them
    # seeds cfg.seed + 1..3: cfg.seed itself, at (epoch, index), seeds train image index's augmentation,
    # and rank r's dropout masks would replay image r's draws
    seed_everything(sample_seed(cfg.seed + 3, epoch, rank))  # dropout, drop path, random erasing (timm's)
    run.preprocess.seed(sample_seed(cfg.seed + 1, epoch, rank))  # batch-stage LSB Swap
    if run.step.mixer is not None:
        run.step.mixer.seed(sample_seed(cfg.seed + 2, epoch, rank))
    set_loader_epoch(run.loaders["train"], epoch)
    stats, global_step = train_one_epoch(
        run.step, run.loaders["train"], run.preprocess, epoch, run.global_step, progress and run.info.is_main, run.info
    )
    check_finite_weights(run.model, epoch)
    run.global_step = global_step
    return stats


def record_epoch(
    run: Run, epoch: int, stats: dict, scores: dict, end: int, guard: SignalGuard, seconds_left: float | None = None
) -> dict:
    """Main process: the epoch's metrics row, best weights, early-stop decision and checkpoint
    (or its in-memory snapshot), then the one printed line (with ``seconds_left``: the estimated
    time to the end, printed only); returns the row."""
    began = time.perf_counter()
    record = {
        "epoch": epoch,
        "train_loss": stats["loss"],
        **scores,
        "lr": stats["lr"],
        "seconds": round(stats["seconds"], 3),
        "images_per_s": round(stats["images"] * run.info.world_size / stats["seconds"], 2),
    }
    # metrics first: rows of epochs after the last checkpoint are trimmed on resume
    # the line is printed inside the signal guard (a signal deferred while writing is raised when
    # it closes, and the saved epoch's line would be lost) but outside the write-error handler (a
    # closed stdout is not a failed checkpoint)
    with guard.writing():
        with write_errors_stop_run(run.run_dir, f"the checkpoint of epoch {epoch}", run.info.world_size):
            append_jsonl(run.run_dir / "metrics.jsonl", record)
            save_best(run, epoch, scores)
            run.stopped_early = early_stop_reason(run, epoch, scores)
            if run.stopped_early or checkpoint_due(run, epoch, end):
                save_last(run, epoch)
            else:
                run.snapshot = capture_state(
                    epoch, run.model, run.optimizer, run.ema, run.step.scaler, extra_state(run), copy=True
                )
        run.timings["save"] += time.perf_counter() - began
        line = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
        eta = f" eta={duration_text(seconds_left)}" if seconds_left and epoch + 1 < end else ""
        print(line + eta, flush=True)
    return record


def early_stop_reason(run: Run, epoch: int, scores: dict) -> str | None:
    """``patience`` evaluations without a better val top-1 -> why the run stops, else None."""
    patience = run.cfg.patience
    if not patience or "val_top1" not in scores or epoch + 1 >= run.cfg.epochs:  # the last epoch ends it anyway
        return None
    evaluations_since = (epoch - run.best["epoch"]) // run.cfg.eval_every
    if evaluations_since < patience:
        return None
    return (
        f"early stop after epoch {epoch}: val top-1 has not improved for {evaluations_since} evaluations "
        f"(patience {patience}); best {run.best['top1']:.4f} at epoch {run.best['epoch']} is kept and scored"
    )


def train(
    cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True, stop_after: int | None = None
) -> dict:
    """Train per ``cfg`` into ``run_dir`` (resuming from its last checkpoint) -> summary.

    ``stop_after``: leave after that many epochs in total (resumable; e.g. a time slot).
    Faults raise :class:`RunFault` (exit 3), SIGINT/SIGTERM :class:`Interrupted` (exit
    128 + signal); both keep the last complete checkpoint (see :mod:`scarce.engine.faults`).
    """
    run_dir = Path(run_dir)
    check_not_running(run_dir)
    if run_dir.is_dir() or not run_dir.exists():  # a file there gets check_run_dir's own message
        check_writable_dir(run_dir, "--resume" if resume else "--out")  # before any work; creates nothing
    done = finished_run(run_dir, resume, cfg) if (run_dir / "config.yaml").is_file() else None
    if done is not None:
        return done
    resume = check_run_dir(run_dir, resume)
    changes = check_resume_config(run_dir, cfg) if resume else {}
    start = time.perf_counter()
    run = prepare_run(absolute_data_paths(cfg), run_dir, resume)
    run.segment_start, run.resume_changes = start, changes
    lock = RunLock(run_dir) if run.info.is_main else contextlib.nullcontext()
    try:
        with lock:
            summary = _train_locked(run, progress, stop_after, start)
        wait_for_main(run.info)
        return summary
    except NonFiniteLossError as exc:
        fix = "lower optim.lr or set clip_grad" + (" (or amp=none)" if run.hardware.amp != "none" else "")
        raise RunFault(
            f"{exc}: the run stopped; {kept_checkpoint(run_dir)}; {fix}, "
            f"then resume with: {resume_command(run_dir, run.info.world_size)} optim.lr=..."
        ) from None
    except Interrupted as exc:
        save_on_signal(run)
        epoch = checkpoint_epoch(run_dir)
        trained = run.stopped_early is not None or (epoch is not None and epoch + 1 >= run.cfg.epochs)
        # a signal after the last epoch stops the end of the run (calibration, test), not an epoch
        lost = (
            "the end of the run (calibration, test) was not done" if trained else "the epoch in progress was abandoned"
        )
        raise Interrupted(
            f"interrupted by {exc}; {lost} and {kept_checkpoint(run_dir, epoch)}; "
            f"continue with: {resume_command(run_dir, run.info.world_size)}",
            exc.signum,
            quiet=not run.info.is_main,
        ) from None
    finally:
        cleanup(run.info)


def _train_locked(run: Run, progress: bool, stop_after: int | None, start: float) -> dict:
    """The part of :func:`train` that writes into the run directory (under its lock)."""
    if run.info.is_main:
        with write_errors_stop_run(run.run_dir, "the run's record (config.yaml, classes.json)", run.info.world_size):
            write_run_info(run)
            trim_metrics(run.run_dir, run.start_epoch)
            if run.resume_changes:  # config.yaml now holds the new values: the old ones are kept here
                record = {"start_epoch": run.start_epoch, "changed": run.resume_changes}
                append_jsonl(run.run_dir / RESUMES_FILE, record)
        if run.resume_changes:
            print(f"resumed at epoch {run.start_epoch} with {describe_changes(run.resume_changes)}", flush=True)
        print("\n".join(startup_lines(run)), flush=True)
    run.timings["startup"] += time.perf_counter() - start
    with SignalGuard() as guard:
        run_epochs(run, progress, stop_after, guard)
        finished = stop_after is None or stop_after >= run.cfg.epochs or run.stopped_early is not None
        if not (run.info.is_main and finished):
            return {}
        with write_errors_stop_run(
            run.run_dir, "the end-of-run results (calibration, test scores)", run.info.world_size
        ):
            summary = finish_run(run, time.perf_counter() - start)
        if not run.cfg.checkpoint.keep_at_end:
            drop_checkpoint(run.run_dir)
        return summary


def finish_run(run: Run, seconds: float) -> dict:
    """Calibration on val, test-set score of the best weights, summary.json."""
    from scarce.engine.evaluation import finish_evaluation

    rows = read_jsonl(run.run_dir / "metrics.jsonl") or [{}]
    select_note = settle_clear_best(run, rows[-1])
    if select_note:
        print(select_note, flush=True)
    summary = {
        "run_dir": os.path.abspath(run.run_dir),
        "epochs": run.cfg.epochs,
        "best": run.best,
        "select": run.select,
        "select_note": select_note,
        "stopped_early": run.stopped_early,
        "train_seconds": round(run.seconds_before + seconds, 1),  # every segment of a resumed run
        "segments": run.segments,
        "last": rows[-1],
    }
    began = time.perf_counter()
    results = finish_evaluation(run.run_dir, run.cfg, run.data, run.device, run.hardware.workers)
    run.timings["final"] = time.perf_counter() - began
    summary["timings"] = {k: round(v, 3) for k, v in run.timings.items()}
    if "calibration" in results:
        summary["calibration"] = results["calibration"]
    if "test" in results:
        summary["test"] = {k: results["test"][k] for k in ("top1", "top5", "balanced_accuracy", "macro_f1", "count")}
        atomic_write_json(run.run_dir / "test_metrics.json", results["test"])
    atomic_write_json(run.run_dir / "summary.json", summary)
    return summary
