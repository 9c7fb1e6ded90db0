"""Benchmark LSB Swap: throughput against ``x.clone()`` and its share of a training step.

Run from the repository root::

    PYTHONPATH=src .venv/bin/python benchmarks/lsb_swap.py --device cpu

Writes ``benchmarks/results/lsb_swap.md`` and ``lsb_swap.json`` and ends its output
with ``lsb_swap_vs_clone: X`` (goal >= 0.5) and ``lsb_swap_step_share: X`` (goal < 0.02).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402

from scarce.augment import lsb_swap_batch  # noqa: E402

RESULTS = HERE / "results"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call; candidates alternate so drift (other load, clocks) hits all alike."""
    for fn in fns.values():  # warm-up: allocator, lazy init, kernels
        fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def step_time(batch: int, size: int, repeats: int, device: torch.device) -> tuple[float, float]:
    """(median seconds of one resnet18 forward+backward+SGD step, of lsb_swap_batch) on one batch."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x.float().div_(255)), y)
        loss.backward()
        opt.step()

    def swap() -> None:
        lsb_swap_batch(x, bits=2, generator=gen)

    t = interleaved_medians({"step": step, "swap": swap}, repeats, device)
    return t["step"], t["swap"]


def report(args: argparse.Namespace, r: dict, device: torch.device, nbytes: int) -> str:
    """The Markdown: throughput per operation, then the swap's share of a training step."""
    clone = r["median_s"]["x.clone()"]
    shape = f"[{args.batch}, 3, {args.size}, {args.size}]"
    step_shape = f"[{args.step_batch}, 3, {args.step_size}, {args.step_size}]"
    throughput = markdown_table(
        ["operation", "median ms", "GB/s", "vs clone"],
        [
            [f"`{name}`", f"{t * 1e3:.3f}", f"{r['gb_per_s'][name]:.2f}", f"{clone / t:.2f}"]
            for name, t in r["median_s"].items()
        ],
    )
    step = markdown_table(
        ["operation", "median ms", "share of step"],
        [
            ["forward + backward + SGD step", f"{r['step_median_s'] * 1e3:.1f}", 1],
            [
                "`lsb_swap_batch(p=1.0)`",
                f"{r['swap_on_step_batch_median_s'] * 1e3:.3f}",
                f"{r['lsb_swap_step_share']:.5f}",
            ],
        ],
    )
    return (
        "\n".join(
            [
                f"# LSB Swap benchmark ({device.type}, torch {torch.__version__}, {r['machine']['torch_threads']} threads)",
                "",
                f"Throughput on uint8 {shape} ({nbytes / 1e6:.1f} MB), median of {args.repeats} interleaved repeats.",
                "",
                throughput,
                "",
                f"Training-step share on uint8 {step_shape}, timm resnet18 (10 classes), "
                f"median of {args.step_repeats} interleaved repeats.",
                "",
                step,
            ]
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64, help="throughput batch size")
    ap.add_argument("--size", type=int, default=224, help="throughput image side (3 channels)")
    ap.add_argument("--repeats", type=int, default=101, help="interleaved repeats for throughput")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--step-batch", type=int, default=32, help="training-step batch size")
    ap.add_argument("--step-size", type=int, default=128, help="training-step image side")
    ap.add_argument("--step-repeats", type=int, default=7, help="interleaved repeats for the step")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for lsb_swap.md / lsb_swap.json")
    args = ap.parse_args(argv)
    device = torch.device(args.device)

    x = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8, device=device)
    gen = torch.Generator().manual_seed(0)
    fns: dict[str, Callable[[], object]] = {
        "x.clone()": lambda: x.clone(),
        "lsb_swap_batch(p=1.0)": lambda: lsb_swap_batch(x, bits=2, p=1.0, generator=gen),
        "lsb_swap_batch(p=0.5)": lambda: lsb_swap_batch(x, bits=2, p=0.5, generator=gen),
    }
    med = interleaved_medians(fns, args.repeats, device)
    nbytes = x.numel()
    gbps = {name: nbytes / t / 1e9 for name, t in med.items()}
    vs_clone = med["x.clone()"] / med["lsb_swap_batch(p=1.0)"]

    t_step, t_swap = step_time(args.step_batch, args.step_size, args.step_repeats, device)
    share = t_swap / t_step

    record = {
        "device": str(device),
        # Other processes share the CPU caches and memory bus; a high load skews the ratio.
        "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "throughput_shape": [args.batch, 3, args.size, args.size],
        "repeats": args.repeats,
        "median_s": med,
        "gb_per_s": gbps,
        "step_shape": [args.step_batch, 3, args.step_size, args.step_size],
        "step_repeats": args.step_repeats,
        "step_median_s": t_step,
        "swap_on_step_batch_median_s": t_swap,
        "lsb_swap_vs_clone": vs_clone,
        "lsb_swap_step_share": share,
        "machine": machine(),
    }
    write_results(
        args.out,
        "lsb_swap",
        record,
        report(args, record, device, nbytes),
        {"lsb_swap_vs_clone": f"{vs_clone:.3f}", "lsb_swap_step_share": f"{share:.5f}"},
    )


if __name__ == "__main__":
    main()
