"""What every benchmark shares: the machine record, median timing, Markdown tables, and one
writer that saves ``<name>.json`` + ``<name>.md`` atomically, prints the table and ends the
output with one ``name: value`` line per headline figure (the contract of ``benchmarks/``)."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def machine() -> dict:
    """Where a result was measured: host, CPU flags that change speed, threads, versions."""
    import torch

    flags = ""
    if Path("/proc/cpuinfo").is_file():
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").is_file()
        else ""
    )
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "avx2": "avx2" in flags,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def write_results(folder: Path, name: str, data: dict, markdown: str, headlines: dict[str, object]) -> None:
    """``folder/name.json`` (data + headlines) and ``folder/name.md``, then print the table and
    the headline lines last."""
    from scarce.io import atomic_write_json, atomic_write_text

    if not headlines:
        raise ValueError("a benchmark needs at least one headline figure")
    atomic_write_json(folder / f"{name}.json", json.loads(json.dumps({**data, "headlines": headlines}, default=str)))
    atomic_write_text(folder / f"{name}.md", markdown.rstrip() + "\n")
    print(markdown.rstrip())
    for key, value in headlines.items():
        print(f"{key}: {value}")
