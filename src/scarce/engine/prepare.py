"""From a config to a :class:`Run` ready for its first epoch: data, model, loss, optimizer,
loaders, and the resumed state of a stopped run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from scarce.config import Config, data_label
from scarce.data import DataBundle, build_data, build_dataset, build_eval_loader, build_train_loader
from scarce.data.check import class_count_problem
from scarce.data.loader import EVAL_BATCH_FACTOR, KeptBatches, eval_shard, keeps_batches
from scarce.data.seeding import seed_everything
from scarce.engine.amp_fallback import resumed_hardware
from scarce.engine.auto_budget import resolve_auto_epochs, resolve_auto_size
from scarce.engine.batch import BatchPreprocessor
from scarce.engine.checkpoint import load_checkpoint
from scarce.engine.distributed import DistInfo, broadcast_object, init_distributed, resolve_device
from scarce.engine.factories import build_components, build_mixer
from scarce.engine.faults import resume_command
from scarce.engine.hardware import (
    Hardware,
    device_name,
    recorded_cpu_speed,
    repeatable,
    resolve_hardware,
    settings_from_record,
)
from scarce.engine.loop import TrainStep
from scarce.engine.resume import check_same_classes, check_val_as_drawn
from scarce.engine.saving import resolve_select
from scarce.engine.startup import check_batch_for_batch_norm, check_input_size, scan_data, validate_config
from scarce.errors import UserError


@dataclass
class Run:
    """Everything a training run holds while it runs."""

    cfg: Config
    run_dir: Path
    info: DistInfo
    device: torch.device
    hardware: Hardware
    data: DataBundle
    model: nn.Module
    step: TrainStep  # its model is ``model`` or its DDP wrapper
    preprocess: BatchPreprocessor
    loaders: dict = field(default_factory=dict)
    start_epoch: int = 0
    global_step: int = 0
    best: dict = field(default_factory=lambda: {"top1": -1.0, "epoch": -1, "weights": None})
    bad_images: list = field(default_factory=list)  # [{"split", "path", "reason"}] skipped by the preflight
    snapshot: dict | None = None  # capture_state() of the last epoch not yet checkpointed
    initial_state: dict | None = None  # capture_state() before epoch 0, to retry it in fp32 (amp_fallback)
    checkpoint_time: float = 0.0  # time.monotonic() of the last checkpoint write
    timings: dict = field(default_factory=lambda: dict.fromkeys(("startup", "train", "val", "save", "final"), 0.0))
    stopped_early: str | None = None  # why the run ended before cfg.epochs (patience)
    select: str = "best"  # checkpoint.select resolved: which weights best.safetensors holds
    best_unsaved: bool = False  # ``best`` is the latest epoch's, not yet in best.safetensors (saving.keep_latest)
    auto_notes: list = field(default_factory=list)  # how each `auto` budget value was chosen
    resume_changes: dict = field(default_factory=dict)  # {key: [saved, new]} this resume changed
    segment_start: float = 0.0  # time.perf_counter() when this process began the run
    seconds_before: float = 0.0  # wall seconds of the earlier segments (to their last checkpoint)
    segments: int = 1  # this process's part and the earlier ones it resumed

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.step.optimizer

    @property
    def ema(self):
        return self.step.ema


def prepare_run(cfg: Config, run_dir: Path, resume: bool = False) -> Run:
    """The run of ``cfg`` in ``run_dir`` (``auto`` budgets resolved on the data), restored from
    its last checkpoint when ``resume``."""
    validate_config(cfg)
    info = init_distributed(device_name(cfg.device))
    if resume:
        check_resume_world_size(run_dir, info.world_size, cfg.batch_size)
    device = resolve_device(cfg.device, info)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(cfg.seed)  # model init depends on the seed only
    data = build_data(cfg.data)
    cfg, auto_notes = resolve_auto_size(cfg, data.splits["train"])
    too_few = class_count_problem(data_label(cfg.data), data.classes)
    if too_few:
        raise UserError(too_few)
    data, bad_images = scan_data(cfg, data)
    cfg, epoch_notes = resolve_auto_epochs(cfg, data.splits["train"], info.world_size)  # readable images only
    in_memory = all(s.array is not None or s.cache is not None for s in data.splits.values())
    hardware = resolve_hardware(cfg, device, in_memory, cpu_speed_chooser(cfg, data, run_dir if resume else None, info))
    if resume:
        hardware = resumed_hardware(hardware, cfg.amp, run_dir)
    train_loader = build_train_loader(
        build_dataset(data, "train", cfg.data, cfg.augment),
        cfg.batch_size,
        cfg.seed,
        hardware.workers,
        info.rank,
        info.world_size,
        balanced=cfg.data.sampler == "balanced",
        keep_last_batch=cfg.data.keep_last_batch,
    )
    model, step = build_train_step(cfg, data, device, info, len(train_loader), hardware)
    preprocess = BatchPreprocessor(data.mean, data.std, device, cfg.augment, hardware.channels_last)
    notes = auto_notes + epoch_notes
    run = Run(
        cfg, run_dir, info, device, hardware, data, model, step, preprocess, bad_images=bad_images, auto_notes=notes
    )
    run.loaders["train"] = train_loader
    n_val = len(data.splits["val"].ids) if "val" in data.splits else 0
    run.select = resolve_select(cfg.checkpoint.select, n_val, len(data.classes), cfg.patience)
    add_eval_loaders(run)
    if resume:
        restore_checkpoint(run)
    run.step.scheduler.step_update(num_updates=run.global_step)
    return run


def check_resume_world_size(run_dir: Path, world_size: int, batch_size: int) -> None:
    """Refuse a resume on another number of processes: batch_size is per process, so the global
    batch, the steps per epoch and the schedule would change mid-run."""
    try:
        record = json.loads((run_dir / "environment.json").read_text())
        trained, per_node = int(record["world_size"]), int(record.get("local_world_size") or record["world_size"])
    except (OSError, ValueError, KeyError, TypeError):  # no record (killed before it was written)
        return
    if trained != world_size:
        command = resume_command(run_dir, trained, per_node)
        raise UserError(
            f"--resume {run_dir}: the run trained on {trained} process{'es' if trained > 1 else ''} (global batch "
            f"{trained * batch_size}), this is {world_size}; resume it as it ran: {command}"
        )


def cpu_speed_chooser(cfg: Config, data: DataBundle, resumed_dir: Path | None, info: DistInfo | None = None):
    """``native_bf16 -> (amp, channels_last, probe)`` for :func:`resolve_hardware` on a CPU: the
    settings a resumed run recorded in environment.json, else timed on this run's model (by
    rank 0 alone under torchrun: ranks timing at once on shared cores would disagree)."""
    from scarce.engine.speed_probe import choose_cpu_settings
    from scarce.losses import loss_requires_head_g
    from scarce.models import create_model

    recorded = recorded_cpu_speed(resumed_dir) if resumed_dir is not None else None
    head_g = loss_requires_head_g(cfg.loss.name)
    size, n_classes = cfg.data.img_size, len(data.classes)

    def choose(native_bf16: bool):
        # rank 0 decides either way, and every rank takes part in the broadcast: a rank that
        # returned the record alone (its CPU could repeat it, rank 0's not) would leave the others waiting
        chosen = None
        if info is None or info.rank == 0:
            if repeatable(recorded, native_bf16):
                chosen = (*settings_from_record(cfg.amp, cfg.channels_last, recorded), None)
            else:
                chosen = choose_cpu_settings(
                    cfg.amp,
                    cfg.channels_last,
                    native_bf16,
                    lambda: create_model(cfg.model, n_classes, data.in_chans, size, head_g=head_g),
                    (max(2, cfg.batch_size), data.in_chans, size, size),
                    key=(repr(cfg.model), n_classes, data.in_chans, head_g),
                )
        return chosen if info is None else broadcast_object(chosen, info)

    return choose


def build_train_step(
    cfg: Config, data: DataBundle, device: torch.device, info: DistInfo, updates_per_epoch: int, hardware: Hardware
) -> tuple[nn.Module, TrainStep]:
    """The model (checked against the input size) and the step that trains it (through DDP when
    distributed): loss, optimizer, per-step scheduler, scaler, clipping, EMA."""
    parts = build_components(
        cfg, data, device, updates_per_epoch, world_size=info.world_size, channels_last=hardware.channels_last
    )
    check_input_size(parts.model, data.in_chans, cfg.data.img_size, device)
    check_batch_for_batch_norm(parts.model, cfg.batch_size)
    train_model = parts.model
    if info.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(parts.model, device_ids=device_ids)
    step = TrainStep(
        train_model,
        parts.loss_fn,
        parts.optimizer,
        parts.scheduler,
        parts.scaler,
        cfg.clip_grad,
        parts.ema,
        hardware.amp,
        build_mixer(cfg.augment.mix),
    )
    return parts.model, step


def add_eval_loaders(run: Run) -> None:
    """The val loader and, with precise BN, the train images without augmentation (every rank
    all of them); both replay their first pass (:class:`KeptBatches`)."""
    cfg, data, workers, info = run.cfg, run.data, run.hardware.workers, run.info
    batch = cfg.batch_size * EVAL_BATCH_FACTOR
    image_bytes = data.in_chans * cfg.data.img_size**2
    if wants_precise_bn(cfg, len(run.loaders["train"])):
        train_set = build_dataset(data, "train", cfg.data, None)
        keep = keeps_batches(len(train_set), image_bytes)
        run.loaders["bn"] = KeptBatches(build_eval_loader(train_set, batch, workers), keep)
    if "val" in data.splits:
        val_set = build_dataset(data, "val", cfg.data, None)
        keep = keeps_batches(len(eval_shard(len(val_set), info.rank, info.world_size)), image_bytes)
        # workers that live for the run only where every pass reads the images again
        loader = build_eval_loader(val_set, batch, workers, info.rank, info.world_size, persistent=not keep)
        run.loaders["val"] = KeptBatches(loader, keep)


def restore_checkpoint(run: Run) -> None:
    """Weights, optimizer moments, EMA, scaler and counters from the run directory's last checkpoint."""
    check_same_classes(run.run_dir, run.data.classes)
    check_val_as_drawn(run.run_dir, run.data.splits.get("val"), f"--resume {run.run_dir}")
    config_groups = [{k: v for k, v in g.items() if k != "params"} for g in run.optimizer.param_groups]
    state = load_checkpoint(run.run_dir, run.model, run.optimizer, run.ema, run.step.scaler)
    run.start_epoch, run.global_step, run.best = state["epoch"] + 1, state["global_step"], state["best"]
    # checkpoints from before these were recorded: earlier segments' time unknown (counted as 0)
    seconds, segments, timings = state.get("seconds", 0.0), state.get("segments", 1), state.get("timings", {})
    numbers = isinstance(timings, dict) and all(isinstance(v, (int, float)) for v in [seconds, *timings.values()])
    if not (numbers and isinstance(segments, int)):
        raise UserError(f"{run.run_dir / 'state.json'}: seconds, segments or timings are not numbers")
    run.seconds_before, run.segments = float(seconds), segments + 1
    for key, value in timings.items():
        run.timings[key] = run.timings.get(key, 0.0) + value
    if run.start_epoch > run.cfg.epochs:
        raise UserError(
            f"--resume {run.run_dir}: the run has trained {run.start_epoch} epochs, more than epochs={run.cfg.epochs}; "
            f"give epochs={run.start_epoch} or more (epochs=N with N > {run.start_epoch} extends it)"
        )
    # The optimizer state keeps its moments; lr, weight decay and the rest follow the config in force.
    for group, values in zip(run.optimizer.param_groups, config_groups):
        group.update(values)


def wants_precise_bn(cfg: Config, updates_per_epoch: int) -> bool:
    """``model.precise_bn``: true, false, or auto (runs under 500 optimizer steps)."""
    setting = cfg.model.precise_bn
    return cfg.epochs * updates_per_epoch < 500 if setting == "auto" else bool(setting)
