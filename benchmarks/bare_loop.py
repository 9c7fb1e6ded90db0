"""The plain loop a practitioner could write in 40 lines: the row every small-data table is judged against.

timm ``resnet18`` (in_chans 1, stem unchanged), Fashion-MNIST 28 px zero-padded to 32, random
horizontal flips and random +-2 px shifts, SGD with Nesterov momentum 0.9, one-cycle lr 0.05
(15 % warmup), weight decay 5e-4, batch 64, cross-entropy; optionally timm RandAugment on the
28 px PIL image first. Train images are the ones the harness trains on (the same per-class
sampling with ``split_seed`` = seed, val drawn and left unused); scored once on the official
10k test set after the last epoch. Nothing of scarce is used except that sampling.

    .venv/bin/python benchmarks/bare_loop.py --seeds 0 1 2 --epochs 100 [--randaugment rand-m9-mstd0.5]

``--device cuda`` runs the model on a GPU (augmentation stays on the CPU, with the same random
draws); ``--root`` reads the Fashion-MNIST files from another folder (e.g. ``gpu_data.py``'s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402

from scarce.data.fashion_mnist import load_arrays, sample_per_class  # noqa: E402

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST train pixel statistics


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """uint8 [B, 1, 28, 28] -> float [B, 1, 32, 32]: pad to 32, random +-2 px shift, random flip."""
    x = F.pad(x.float() / 255, (4, 4, 4, 4))  # 36 px: 2 px of padding plus 2 px of shift room each side
    dx, dy = torch.randint(0, 5, (2, x.shape[0]), generator=gen)
    x = torch.stack([img[:, y : y + 32, x0 : x0 + 32] for img, x0, y in zip(x, dx.tolist(), dy.tolist())])
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x[flip] = x[flip].flip(-1)
    return (x - MEAN) / STD


def train_epoch(
    model, opt, sched, images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, device: str
) -> None:
    """One epoch of shuffled batches of 64 through ``augment``; ``sched`` (or None) steps per batch."""
    order = torch.randperm(len(labels), generator=gen)
    for i in range(0, len(order), 64):
        batch = order[i : i + 64]
        loss = F.cross_entropy(model(augment(images[batch], gen).to(device)), labels[batch].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()


def train_and_test(
    seed: int, epochs: int, per_class: int, randaugment: str | None, device: str = "cpu", root: str | None = None
) -> dict:
    train_x, train_y = load_arrays(root, "train")
    test_x, test_y = load_arrays(root, "test")
    idx = sample_per_class(train_y, [per_class, per_class], seed)[0]
    images, labels = torch.from_numpy(train_x[idx]).unsqueeze(1), torch.from_numpy(train_y[idx])
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = timm.create_model("resnet18", num_classes=10, in_chans=1).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = -(-len(labels) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=epochs * steps, pct_start=0.15)
    ra = None
    if randaugment:
        from timm.data.auto_augment import rand_augment_transform

        ra = rand_augment_transform(randaugment, {"translate_const": 12, "img_mean": 0})
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        epoch_images = images
        if ra is not None:
            epoch_images = torch.stack(
                [torch.from_numpy(np.asarray(ra(Image.fromarray(im[0].numpy()))))[None] for im in images]
            )
        train_epoch(model, opt, sched, epoch_images, labels, gen, device)
    train_seconds = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(test_y), 500):
            x = (
                F.pad(torch.from_numpy(test_x[i : i + 500].copy()).unsqueeze(1).float() / 255, (2, 2, 2, 2)) - MEAN
            ) / STD
            correct += int((model(x.to(device)).argmax(1).cpu() == torch.from_numpy(test_y[i : i + 500])).sum())
    return {
        "seed": seed,
        "test_top1": correct / len(test_y),
        "train_seconds": round(train_seconds, 1),
        "seconds_per_epoch": round(train_seconds / epochs, 3),
        "device": device,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--randaugment", default=None, help="timm RandAugment string, e.g. rand-m9-mstd0.5")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--name", default=None, help="results file stem (default bare_loop[_ra]_k<per-class>)")
    p.add_argument("--device", default="cpu", help="where the model runs (cpu, cuda)")
    p.add_argument("--root", default=None, help="Fashion-MNIST folder (default: the Debian package's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.name or f"bare_loop{'_ra' if args.randaugment else ''}_k{args.per_class}_e{args.epochs}"
    rows = []
    for seed in args.seeds:  # one JSON per finished seed: a killed benchmark resumes at the next seed
        done = HERE / "work" / "bare_loop" / name / f"seed{seed}.json"
        if not done.is_file():
            from scarce.io import atomic_write_json

            atomic_write_json(
                done,
                {
                    **train_and_test(seed, args.epochs, args.per_class, args.randaugment, args.device, args.root),
                    "threads": torch.get_num_threads(),
                },
            )
        rows.append(json.loads(done.read_text()))
        print(f"seed {seed}: test top-1 {100 * rows[-1]['test_top1']:.2f} %", flush=True)
    top1 = [100 * r["test_top1"] for r in rows]
    mean, std = statistics.mean(top1), statistics.stdev(top1) if len(top1) > 1 else 0.0
    table = markdown_table(
        ["seed", "test top-1 %", "train s", "s/epoch"],
        [[r["seed"], f"{100 * r['test_top1']:.2f}", r["train_seconds"], r["seconds_per_epoch"]] for r in rows],
    )
    summary = f"\n\nmean +- std over {len(rows)} seeds: **{mean:.2f} +- {std:.2f}** ({args.epochs} epochs)\n"
    write_results(
        HERE / "results",
        name,
        {"args": vars(args), "rows": rows, "mean": mean, "std": std, "machine": machine()},
        table + summary,
        {f"{name}_top1_mean": f"{mean:.2f}", f"{name}_top1_std": f"{std:.2f}"},
    )
    return {"rows": rows, "mean": mean, "std": std}


if __name__ == "__main__":
    main()
