"""``amp: auto`` and ``channels_last: auto`` on a CPU: time a few training steps, keep the fastest.

No fixed rule was right on CPUs: with native bf16 (AVX512-BF16), bf16 autocast trained resnet18
1.6x faster than fp32 but efficientnet_b0 0.75x (its depthwise convolutions); channels_last was
1.35x for efficientnet_b0 and 0.75-0.91x for resnet18 at 32-64 px (BENCHMARKS.md, "Speed"). So a
run times each candidate on a fresh copy of its own model and input size before its first epoch
(seconds), and keeps plain fp32 / contiguous unless another setting is clearly faster. bf16 is a
candidate only where it is native: emulated, it was 7-50x slower, and timing it would take minutes.
The choice is saved in environment.json; a resumed run reuses it, so its numerics do not change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import product

import torch
import torch.nn as nn

PROBE_MARGIN = 1.1  # another setting must be >= 10 % faster than fp32 / contiguous (noise, exact numerics)
PROBE_STEPS = 2  # timed steps per setting, after one untimed (oneDNN builds its kernels on first use)
PROBE_MAX_BATCH = 32
_chosen: dict[tuple, tuple[str, bool, dict]] = {}  # one probe per model and shape in a process


def step_seconds(model: nn.Module, x: torch.Tensor, amp: str) -> float:
    """Wall seconds of one forward + backward of ``model`` on ``x [B, C, H, W]`` under ``amp``."""
    from scarce.engine.loop import autocast

    start = time.perf_counter()
    with autocast(x.device, amp):
        out = model(x)
    # a model with head g (focal cosine, cosine + CE) returns a dict of logits, others a tensor
    outputs = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else (out,)
    sum(o.float().mean() for o in outputs).backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def pick_fastest(seconds: dict[tuple[str, bool], float], margin: float = PROBE_MARGIN) -> tuple[str, bool]:
    """The ``(amp, channels_last)`` to train with, from ``seconds`` per step in candidate order
    (the plain setting first): plain unless another beats it by ``margin``; of those that do, the
    first within ``margin`` of the fastest, so two candidates within timing noise of each other
    do not swap from run to run."""
    plain = next(iter(seconds))
    best = min(seconds.values())
    faster = [key for key, value in seconds.items() if margin * value <= seconds[plain]]
    return next((key for key in faster if seconds[key] < margin * best), plain)


def probe_settings(
    make_model: Callable[[], nn.Module],
    shape: tuple[int, int, int, int],
    amps: list[str],
    channels_last: list[bool],
    steps: int = PROBE_STEPS,
) -> tuple[str, bool, dict[str, float]]:
    """Time ``steps`` training steps of ``make_model()`` on random ``shape`` input per candidate;
    returns the chosen ``(amp, channels_last)`` and the seconds per step of each candidate.

    Runs under a forked RNG: building and running the probe model draws nothing from the run's
    random stream, so a seeded run trains the same whether it probed or not.
    """
    seconds: dict[tuple[str, bool], float] = {}
    with torch.random.fork_rng(devices=[]):
        model = make_model().train()
        x = torch.randn(shape)
        for amp, last in product(amps, channels_last):
            fmt = torch.channels_last if last else torch.contiguous_format
            model, xf = model.to(memory_format=fmt), x.contiguous(memory_format=fmt)
            step_seconds(model, xf, amp)
            seconds[(amp, last)] = min(step_seconds(model, xf, amp) for _ in range(steps))
    amp, last = pick_fastest(seconds)
    return amp, last, {f"{a}{' channels_last' if c else ''}": round(s, 4) for (a, c), s in seconds.items()}


def choose_cpu_settings(
    amp: str,
    channels_last: bool | str,
    native_bf16: bool,
    make_model: Callable[[], nn.Module],
    shape: tuple[int, int, int, int],
    key: tuple,
) -> tuple[str, bool, dict[str, float] | None]:
    """Resolve the ``auto`` speed settings of a CPU run: fixed values stay; ``auto`` ones are
    probed (``key`` identifies model and shape: a process probes each once). Returns
    ``(amp, channels_last, seconds per step of each candidate or None)``."""
    amps = (["none", "bf16"] if native_bf16 else ["none"]) if amp == "auto" else [amp]
    lasts = [False, True] if channels_last == "auto" else [bool(channels_last)]
    if len(amps) * len(lasts) == 1:
        return amps[0], lasts[0], None
    shape = (min(shape[0], PROBE_MAX_BATCH), *shape[1:])
    key = (key, shape, tuple(amps), tuple(lasts), torch.get_num_threads())
    if key not in _chosen:
        _chosen[key] = probe_settings(make_model, shape, amps, lasts)
    return _chosen[key]
