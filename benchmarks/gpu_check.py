"""Speed switches on a CUDA GPU, and scarce's trainer against a bare loop there.

Part 1: training images/s of one step per variant (fp32 / bf16 / fp16 autocast x contiguous /
channels_last) for resnet18 and efficientnet_b0, at the fashion-mnist-50 recipe's shape (64 px,
batch 64, 1 channel) and at an ImageNet-like one (224 px, batch 128, 3 channels); candidates
alternate so clock drift hits all alike. Part 2: ``train_one_epoch`` with scarce's loader against
a bare loop over the same images held on the GPU (``throughput.py``'s two sides, on CUDA). Part 3:
what ``amp=auto`` and ``channels_last=auto`` resolve to on this device. Run where a GPU is::

    PYTHONPATH=src python3 benchmarks/gpu_check.py --results $OUT

Writes ``gpu_check.{md,json}``; ends with one ``name: value`` line per headline figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402
from throughput import bare_side, interleaved, scarce_side  # noqa: E402

from scarce.engine.hardware import resolve_amp, resolve_channels_last  # noqa: E402

AMPS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # fp16 with a GradScaler, as the trainer
SHAPES = [(64, 64, 1, 20), (224, 128, 3, 10)]  # (px, batch, channels, steps per timing)


def step_fn(name: str, amp: str, channels_last: bool, px: int, batch: int, chans: int, steps: int, device: str):
    """A closure running ``steps`` training steps of one variant -> images trained."""
    model = timm.create_model(name, num_classes=10, in_chans=chans).to(device).train()
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    x = torch.randn(batch, chans, px, px, device=device).to(memory_format=memory)
    y = torch.randint(0, 10, (batch,), device=device)

    def fn() -> int:
        for _ in range(steps):
            with torch.autocast("cuda", dtype=AMPS[amp] or torch.float32, enabled=amp != "fp32"):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
        torch.cuda.synchronize()
        return steps * batch

    return fn


def amp_rows(models: list[str], amps: list[str], repeats: int, device: str) -> list[dict]:
    """One row per model x shape x autocast x memory format, printed as measured (a time-boxed
    run that is cut short still shows what it got)."""
    rows = []
    for name in models:
        for px, batch, chans, steps in SHAPES:
            fns = {
                (amp, cl): step_fn(name, amp, cl, px, batch, chans, steps, device)
                for amp in ["fp32", *[a for a in amps if a != "fp32"]]
                for cl in (False, True)
            }
            started = time.perf_counter()
            rates = interleaved(fns, repeats)
            base = rates[("fp32", False)]
            print(
                f"{name} {px} px ({time.perf_counter() - started:.0f} s): "
                + ", ".join(f"{a}{'+cl' if cl else ''} {r:.0f}/s ({r / base:.2f}x)" for (a, cl), r in rates.items()),
                flush=True,
            )
            rows += [
                {
                    "model": name,
                    "px": px,
                    "batch": batch,
                    "amp": a,
                    "channels_last": cl,
                    "images_per_s": r,
                    "vs_fp32": r / base,
                }
                for (a, cl), r in rates.items()
            ]
            del fns
            torch.cuda.empty_cache()
    return rows


def loop_rates(batch: int, repeats: int, device: str, workers: int, overrides: tuple[str, ...]) -> dict[str, float]:
    epoch, images, targets, cfg, data = scarce_side(workers, batch, device, overrides)
    bare = bare_side(images, targets, cfg, data, batch, device)

    def synced_epoch() -> int:
        n = epoch()
        torch.cuda.synchronize()
        return n

    return interleaved({"scarce": synced_epoch, "bare": bare}, repeats)


def report(rows: list[dict], rates: dict, resolved: dict, args) -> str:
    amp = markdown_table(
        ["model", "px", "batch", "autocast", "channels_last", "train images/s", "vs fp32 contiguous"],
        [
            [
                r["model"],
                r["px"],
                r["batch"],
                r["amp"],
                "yes" if r["channels_last"] else "no",
                f"{r['images_per_s']:.0f}",
                f"{r['vs_fp32']:.2f}",
            ]
            for r in rows
        ],
    )
    loops = markdown_table(
        ["loop", "train images/s (median)"],
        [
            [f"scarce train_one_epoch + loader ({args.workers} workers)", f"{rates['scarce']:.0f}"],
            ["bare PyTorch loop (uint8 tensor on the GPU)", f"{rates['bare']:.0f}"],
        ],
    )
    return (
        f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}, timm {timm.__version__}. "
        f"`amp=auto` -> {resolved['amp']}, `channels_last=auto` -> {resolved['channels_last']}.\n\n"
        f"{amp}\n\n20 steps per timing at 64 px, 10 at 224 px; median of {args.repeats} interleaved repeats.\n\n"
        f"resnet18, Fashion-MNIST 50/class at 32 px, batch {args.batch}, augmentation off:\n\n{loops}\n"
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="*", default=["resnet18", "efficientnet_b0"])
    p.add_argument("--amps", nargs="*", default=["fp32", "bf16"], choices=list(AMPS))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch", type=int, default=64, help="batch of the trainer-vs-bare-loop part")
    p.add_argument("--workers", type=int, default=0, help="scarce loader workers in that part")
    p.add_argument("--set", nargs="*", default=[], help="config overrides of that part, e.g. data.root=DIR")
    p.add_argument("--results", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check.py: no CUDA device here (torch.cuda.is_available() is False)")
    device = "cuda"
    resolved = {
        "amp": resolve_amp("auto", torch.device(device)),
        "channels_last": resolve_channels_last("auto", torch.device(device)),
    }
    rows = amp_rows(args.models, args.amps, args.repeats, device)
    rates = loop_rates(args.batch, 5, device, args.workers, tuple(args.set))
    ratio = rates["scarce"] / rates["bare"]
    out = {
        "rows": rows,
        "rates": rates,
        "trainer_vs_bare_loop": ratio,
        "resolved": resolved,
        "gpu": torch.cuda.get_device_name(),
        "args": vars(args) | {"results": None},
        "machine": machine(),
    }
    best = {
        f"{r['model']}_{r['px']}px": r
        for r in rows
        if r["vs_fp32"] == max(q["vs_fp32"] for q in rows if q["model"] == r["model"] and q["px"] == r["px"])
    }
    headline = {"trainer_vs_bare_loop": f"{ratio:.3f}"} | {
        f"best_{k}": f"{r['amp']}{'+cl' if r['channels_last'] else ''} {r['vs_fp32']:.2f}x" for k, r in best.items()
    }
    write_results(args.results, "gpu_check", out, report(rows, rates, resolved, args), headline)
    return out


if __name__ == "__main__":
    main()
