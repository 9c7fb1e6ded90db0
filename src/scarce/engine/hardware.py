"""What the machine offers, decided once: device, autocast dtype, memory format, threads.

Speed switches are hardware-dependent: bf16 autocast ran 1.5x faster than fp32 on a CPU with
native bf16 (AVX512-BF16) and 7-20x slower on an AVX2-only CPU. The fixed rule here (a switch
on only where the hardware has it natively) holds on GPUs, for ``deterministic`` runs and for
scoring runs that recorded no choice; a training run on a CPU times its candidates instead
(:mod:`scarce.engine.speed_probe`), and scoring repeats what it chose (:func:`scoring_speed`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch


def device_name(setting: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda[:N]`` must exist."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        from scarce.errors import UserError

        raise UserError(
            f"device '{setting}': CUDA is not available here (torch {torch.__version__}, no GPU or "
            f"driver); use device=cpu or device=auto"
        )
    return setting


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return frozenset()
    line = next((ln for ln in path.read_text().splitlines() if ln.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def native_bf16(device: torch.device) -> bool:
    """bf16 matmuls run in hardware: CUDA with bf16, or a CPU with AMX or AVX512-BF16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def resolve_amp(setting: str, device: torch.device) -> str:
    """``amp`` config -> ``none``, ``bf16`` or ``fp16``; ``auto`` is bf16 only where native."""
    if setting != "auto":
        return setting
    return "bf16" if native_bf16(device) else "none"


def resolve_channels_last(setting: bool | str, device: torch.device) -> bool:
    """``channels_last`` config -> bool; ``auto``: on CUDA, and on CPUs with native bf16
    (where it was measured faster); off on other CPUs."""
    if setting != "auto":
        return bool(setting)
    return device.type == "cuda" or native_bf16(device)


def recorded_hardware(run_dir: Path) -> dict | None:
    """The ``hardware`` mapping a run recorded in its environment.json, or None (no readable record)."""
    import json

    try:
        hardware = json.loads((Path(run_dir) / "environment.json").read_text())["hardware"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return hardware if isinstance(hardware, dict) else None


def recorded_cpu_speed(run_dir: Path) -> dict | None:
    """The ``hardware`` a CPU run recorded in its environment.json (amp and channels_last as it
    trained), or None (no record, or the run trained on a GPU)."""
    hardware = recorded_hardware(run_dir)
    return hardware if hardware is not None and str(hardware.get("device")) == "cpu" else None


def repeatable(recorded: dict | None, native_bf16_here: bool) -> bool:
    """A recorded CPU choice this CPU can repeat: anything but bf16 where bf16 would be emulated
    (7-50x slower)."""
    return recorded is not None and (recorded.get("amp") != "bf16" or native_bf16_here)


def settings_from_record(amp: str, channels_last: bool | str, recorded: dict) -> tuple[str, bool]:
    """``(amp, channels_last)``: the recorded choice for each ``auto`` switch; set values stay."""
    amp = recorded["amp"] if amp == "auto" else amp
    return amp, bool(recorded["channels_last"] if channels_last == "auto" else channels_last)


def scoring_speed(amp: str, channels_last: bool | str, run_dir: Path, device: torch.device) -> tuple[str, bool]:
    """``(amp, channels_last)`` to score a saved run on ``device``: a CPU run's recorded choice
    where this CPU can repeat it (its test score and a later evaluation then agree), else the
    fixed rule; values set in the config stay."""
    recorded = recorded_cpu_speed(run_dir) if device.type == "cpu" else None
    if repeatable(recorded, native_bf16(device)):
        return settings_from_record(amp, channels_last, recorded)
    return resolve_amp(amp, device), resolve_channels_last(channels_last, device)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_threads(setting: int | None) -> int:
    """torch intra-op threads: the config value; else ``OMP_NUM_THREADS`` when set; else the
    available cores shared among the processes ``torchrun`` started on this machine."""
    if setting:
        return setting
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    return cores_per_process()


def cores_per_process() -> int:
    """The available cores shared among the processes ``torchrun`` started on this machine."""
    return max(1, available_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def resolve_workers(setting: int | str, threads: int, in_memory: bool, device_type: str = "cpu") -> int:
    """Loader worker processes. ``auto`` on a CPU: none when the images are in memory (augmenting
    a decoded uint8 image is cheaper than a worker stealing a core from the compute threads), else
    the cores of this process's share left beside its compute threads. On a GPU the cores are free for augmentation
    whatever the threads: this process's share of them less one (on an H200 the fashion-mnist-50
    recipe trained 962 images/s with 0 workers, 2021 with 2, 2749 with 4, 2751 with 8). At least
    1, at most 8."""
    if setting != "auto":
        return int(setting)
    if device_type == "cuda":
        return max(1, min(8, cores_per_process() - 1))
    if in_memory:
        return 0
    return max(1, min(8, cores_per_process() - threads))  # under torchrun, this process's share


@dataclass(frozen=True)
class Hardware:
    """The resolved speed settings of a run (printed at start, saved in environment.json)."""

    device: str
    amp: str
    channels_last: bool
    threads: int
    workers: int
    cpu_native_bf16: bool
    probe: dict[str, float] | None = None  # seconds per training step of each candidate timed
    amp_fallback: dict | None = None  # {"epoch", "from", "reason"}: amp=auto's bf16 diverged, fp32 since

    def describe(self) -> str:
        return (
            f"hardware: device {self.device}, amp {self.amp}, channels_last {str(self.channels_last).lower()}, "
            f"{self.threads} torch threads, {self.workers} loader workers"
            + ("" if self.device != "cpu" else f" (CPU native bf16: {'yes' if self.cpu_native_bf16 else 'no'})")
            + ("" if not self.probe else "; timed s/step: " + ", ".join(f"{k} {v:.3g}" for k, v in self.probe.items()))
        )


def resolve_hardware(cfg, device: torch.device, in_memory: bool, choose_cpu_speed=None) -> Hardware:
    """Resolve every ``auto`` speed switch of ``cfg`` for ``device`` and set torch's threads.

    ``choose_cpu_speed(native_bf16) -> (amp, channels_last, probe)`` decides amp and memory format
    on a CPU (:func:`scarce.engine.speed_probe.choose_cpu_settings`); without it, or with
    ``deterministic`` (a timed choice could differ between two runs), the fixed rule above holds.
    """
    threads = resolve_threads(cfg.threads)
    torch.set_num_threads(threads)
    amp, channels_last, probe = resolve_amp(cfg.amp, device), resolve_channels_last(cfg.channels_last, device), None
    if choose_cpu_speed is not None and device.type == "cpu" and not cfg.deterministic:
        amp, channels_last, probe = choose_cpu_speed(native_bf16(device))
    return Hardware(
        device=str(device),
        amp=amp,
        channels_last=channels_last,
        threads=threads,
        workers=resolve_workers(cfg.data.num_workers, threads, in_memory, device.type),
        cpu_native_bf16=native_bf16(torch.device("cpu")),
        probe=probe,
    )
