"""bf16 autocast chosen by ``amp=auto`` falls back to fp32 when it diverges.

``amp=auto`` picks bf16 where it is faster (a GPU with bf16, or a CPU with native bf16 whose timed
steps favour it), but bf16 autocast can diverge where fp32 does not: timm's ``test_resnet`` at
16 px with AdamW lr 0.01 reached non-finite weights within its first epoch in bf16 and trained in
fp32 (session 16). The user never asked for bf16 there, so a run that chose it itself does not stop:
it puts back the state of the end of the previous epoch (the in-memory snapshot, the checkpoint
on disk, or the initial weights), trains that epoch again in fp32 and keeps fp32 to the end. The
switch is printed and recorded in environment.json (``hardware.amp`` becomes ``none``,
``hardware.amp_fallback`` says when and why), so a resumed run and scoring repeat fp32.

A run that set ``amp`` itself, or runs under torchrun (ranks would have to agree on the retry
mid-epoch), stops as before with exit 3, and the message names ``amp=none``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from scarce.engine.checkpoint import capture_state, load_checkpoint, restore_snapshot

if TYPE_CHECKING:
    from scarce.engine.hardware import Hardware
    from scarce.engine.prepare import Run


def can_fall_back(run: Run) -> bool:
    """The run chose a reduced-precision autocast itself (``amp=auto``) and is one process."""
    return run.cfg.amp == "auto" and run.hardware.amp != "none" and run.info.world_size == 1


def resumed_hardware(hardware: Hardware, amp_setting: str, run_dir: Path) -> Hardware:
    """A resumed run whose earlier part fell back stays in fp32 (on a GPU too, where no CPU speed
    choice is reused) and keeps the record of when it fell back."""
    from scarce.engine.hardware import recorded_hardware

    fallback = (recorded_hardware(run_dir) or {}).get("amp_fallback")
    if amp_setting != "auto" or not isinstance(fallback, dict):
        return hardware
    return dataclasses.replace(hardware, amp="none", amp_fallback=fallback)


def keep_initial_state(run: Run) -> None:
    """Before a fresh run's first epoch: a copy of the initial state, to retry epoch 0 from."""
    if run.start_epoch == 0 and can_fall_back(run):
        run.initial_state = capture_state(
            -1, run.model, run.optimizer, run.ema, run.step.scaler, {"global_step": 0}, copy=True
        )


def restore_epoch_start(run: Run, epoch: int) -> None:
    """Weights, optimizer, EMA and step counter as they were when ``epoch`` began."""
    if run.snapshot is not None:  # the previous epoch, not checkpointed yet
        restore_snapshot(run.snapshot, run.model, run.optimizer, run.ema, run.step.scaler)
        run.global_step = run.snapshot["extra"]["global_step"]
    elif epoch == 0:
        restore_snapshot(run.initial_state, run.model, run.optimizer, run.ema, run.step.scaler)
        run.global_step = 0
    else:  # the previous epoch's checkpoint was written at its end
        state = load_checkpoint(run.run_dir, run.model, run.optimizer, run.ema, run.step.scaler)
        run.global_step = state["global_step"]
    run.step.scheduler.step_update(num_updates=run.global_step)


def fall_back_to_fp32(run: Run, epoch: int, reason: str) -> str:
    """Restore the start of ``epoch`` and train on in fp32; returns the line to print."""
    from scarce.engine.startup import write_environment

    restore_epoch_start(run, epoch)
    was = run.hardware.amp
    run.step.amp = "none"
    fallback = {"epoch": epoch, "from": was, "reason": reason}
    run.hardware = dataclasses.replace(run.hardware, amp="none", amp_fallback=fallback)
    write_environment(run)
    return (
        f"amp: {reason} under {was} autocast (chosen by amp=auto); epoch {epoch} is trained again from "
        f"its start in fp32, and the run stays in fp32 (recorded in environment.json)"
    )
