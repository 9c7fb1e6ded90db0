"""Training images/s: the scarce trainer vs a bare PyTorch loop, and bf16 / channels_last on this CPU.

Part 1, in one run with interleaved repeats: ``train_one_epoch`` (scarce's loader from
``scarce.data`` + ``BatchPreprocessor``) against a plain loop over the same images held as a
uint8 tensor ``[N, C, H, W]`` (same timm model, batch, optimizer; augmentation off on both
sides: the scarce transform still resizes each 28 px image to 32 px, the bare loop gets them
pre-resized). Part 2: one training step per variant (fp32 / bf16 autocast x contiguous /
channels_last) for resnet18 and efficientnet_b0. Run from the repository root::

    .venv/bin/python benchmarks/throughput.py

Writes ``benchmarks/results/throughput.{md,json}``; last line ``trainer_vs_bare_loop: X`` (goal >= 0.95).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402

from scarce.config import load_config  # noqa: E402
from scarce.data import build_data, build_dataset, build_train_loader, set_loader_epoch  # noqa: E402
from scarce.engine.batch import BatchPreprocessor  # noqa: E402
from scarce.engine.factories import build_components  # noqa: E402
from scarce.engine.loop import TrainStep, train_one_epoch  # noqa: E402

RESULTS = HERE / "results"


def scarce_side(workers: int, batch: int, device: str = "cpu", overrides: tuple[str, ...] = ()):
    """The trainer's pieces for fashion-mnist-50 with augmentation off -> (epoch fn, uint8 data)."""
    cfg = load_config(
        "fashion-mnist-50",
        [
            "augment.scale=[1.0,1.0]",
            "augment.ratio=[1.0,1.0]",
            "augment.hflip=0.0",
            f"data.num_workers={workers}",
            f"batch_size={batch}",
            f"device={device}",
            *overrides,
        ],
    )
    data = build_data(cfg.data)
    dataset = build_dataset(data, "train", cfg.data, cfg.augment)
    loader = build_train_loader(dataset, batch, cfg.seed, workers)
    parts = build_components(cfg, data, torch.device(device), updates_per_epoch=len(loader))
    preprocess = BatchPreprocessor(data.mean, data.std, torch.device(device), cfg.augment)
    state = {"epoch": 0, "step": 0}

    def epoch() -> int:
        set_loader_epoch(loader, state["epoch"])
        step = TrainStep(parts.model, parts.loss_fn, parts.optimizer, parts.scheduler)
        stats, state["step"] = train_one_epoch(step, loader, preprocess, state["epoch"], state["step"], progress=False)
        state["epoch"] += 1
        return stats["images"]

    # the same images, already transformed, for the bare loop: uint8 [N, C, H, W]
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    return epoch, images, torch.tensor(data.splits["train"].targets), cfg, data


def bare_side(images: torch.Tensor, targets: torch.Tensor, cfg, data, batch: int, device: str = "cpu"):
    """A plain PyTorch loop: shuffle, slice, normalise, forward, backward, step (the images stay
    on ``device``, as a bare loop over a small set would keep them)."""
    model = timm.create_model(cfg.model.name, num_classes=len(data.classes), in_chans=data.in_chans).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1) * 255
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1) * 255
    images, targets = images.to(device), targets.to(device)
    generator = torch.Generator().manual_seed(0)
    steps = len(images) // batch  # drop_last, as the trainer's loader

    def epoch() -> int:
        model.train()
        order = torch.randperm(len(images), generator=generator).to(device)
        for s in range(steps):
            idx = order[s * batch : (s + 1) * batch]
            x = (images[idx].float() - mean) / std
            loss = F.cross_entropy(model(x), targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        float(loss)  # a bare loop logs its last loss; on a GPU this waits for the queued steps
        return steps * batch

    return epoch


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median images/s per candidate; candidates alternate so load drift hits all alike."""
    for fn in fns.values():
        fn()  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            n = fn()
            rates[name].append(n / (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in rates.items()}


def amp_table(models: list[str], size: int, batch: int, steps: int, repeats: int) -> list[dict]:
    """Training images/s of fp32 / bf16 autocast x contiguous / channels_last, per model."""
    rows = []
    for name in models:
        fns = {}
        for amp in ("fp32", "bf16"):
            for fmt in ("contiguous", "channels_last"):
                model = timm.create_model(name, num_classes=100)
                memory = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
                model = model.to(memory_format=memory).train()
                opt = torch.optim.SGD(model.parameters(), lr=0.01)
                x = torch.randn(batch, 3, size, size).to(memory_format=memory)
                y = torch.randint(0, 100, (batch,))

                def fn(model=model, opt=opt, x=x, y=y, amp=amp) -> int:
                    for _ in range(steps):
                        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
                            loss = F.cross_entropy(model(x), y)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                    return steps * batch

                fns[(amp, fmt)] = fn
        rates = interleaved(fns, repeats)
        base = rates[("fp32", "contiguous")]
        rows += [
            {"model": name, "amp": a, "memory_format": f, "images_per_s": r, "vs_fp32": r / base}
            for (a, f), r in rates.items()
        ]
    return rows


def report(args: argparse.Namespace, rates: dict[str, float], amp_rows: list[dict]) -> str:
    """The Markdown: trainer vs bare loop, then images/s per autocast x memory format."""
    loops = markdown_table(
        ["loop", "train images/s (median)"],
        [
            [f"scarce train_one_epoch + loader ({args.workers} workers)", f"{rates['scarce']:.1f}"],
            ["bare PyTorch loop (uint8 tensor in memory)", f"{rates['bare']:.1f}"],
        ],
    )
    amp = markdown_table(
        ["model", "autocast", "memory format", f"train images/s ({args.amp_size} px, batch 16)", "vs fp32"],
        [
            [r["model"], r["amp"], r["memory_format"], f"{r['images_per_s']:.1f}", f"{r['vs_fp32']:.2f}"]
            for r in amp_rows
        ],
    )
    return (
        f"{loops}\n\nresnet18, Fashion-MNIST 50/class at 32 px, batch {args.batch}, {args.threads} thread(s), "
        f"{args.repeats} interleaved epochs each.\n\n{amp}\n"
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=0, help="scarce loader workers")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared CPU)")
    p.add_argument("--amp-size", type=int, default=96, help="image size of the bf16/channels_last table")
    p.add_argument("--amp-models", nargs="*", default=["resnet18", "efficientnet_b0"])
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    epoch, images, targets, cfg, data = scarce_side(args.workers, args.batch)
    rates = interleaved({"scarce": epoch, "bare": bare_side(images, targets, cfg, data, args.batch)}, args.repeats)
    ratio = rates["scarce"] / rates["bare"]
    amp_rows = amp_table(args.amp_models, args.amp_size, 16, 2, 3) if args.amp_models else []
    out = {
        "rates": rates,
        "trainer_vs_bare_loop": ratio,
        "amp": amp_rows,
        "args": vars(args) | {"results": None},
        "machine": machine(),
    }
    write_results(
        args.results, "throughput", out, report(args, rates, amp_rows), {"trainer_vs_bare_loop": f"{ratio:.3f}"}
    )
    return out


if __name__ == "__main__":
    main()
