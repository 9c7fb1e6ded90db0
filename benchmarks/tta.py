"""Benchmark: TTA with N views in one data pass vs N separate single-view passes.

Same model (a timm model, random init, eval mode), same images (the first ``--images``
of a built-in dataset's test split), same views: pass ``k`` of the baseline loads the
data again and computes only view ``k`` (``TTATransform(views=[k])``), the TTA run
computes all N views of every image from one decode (``TTATransform(views=N)``) and
sends them through the model ``--batch-size`` rows at a time. Both use RandAugment
(``--randaugment``) for views >= 1, as a run trained with it would. Repeats are
interleaved (the order alternates) and the median is reported; the soft vote of the N
passes is checked against the TTA result.

Goal: TTA time <= 1.05 x the N passes. Writes ``benchmarks/results/tta.md`` and ``.json``;
the last line printed is ``tta_vs_passes: X``.

    PYTHONPATH=src python benchmarks/tta.py [--views 4 --model resnet18 --img-size 32 --images 500 --threads 1]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import timm
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402

from scarce.config import AugmentConfig, DataConfig  # noqa: E402
from scarce.data.datasets import ImageDataset  # noqa: E402
from scarce.data.loader import build_data, build_eval_loader  # noqa: E402
from scarce.engine.batch import BatchPreprocessor  # noqa: E402
from scarce.inference.tta import TTATransform, tta_predict  # noqa: E402
from scarce.models.heads import prediction_probs  # noqa: E402

RESULTS = HERE / "results"


def make_runner(a: argparse.Namespace, device: torch.device):
    """-> run(views) returning probs [N, C]: one loader pass computing the given view indices."""
    data = DataConfig(name=a.data, img_size=a.img_size, crop_pct=0.875, num_workers=a.workers)
    bundle = build_data(data)
    split = bundle.splits["test"]
    split = type(split)(
        ids=split.ids[: a.images],
        targets=split.targets[: a.images],
        classes=split.classes,
        root=split.root,
        array=None if split.array is None else split.array[: a.images],
    )
    augment = AugmentConfig(hflip=0.5, randaugment=a.randaugment)
    torch.manual_seed(0)
    model = (
        timm.create_model(
            a.model, pretrained=False, num_classes=len(bundle.classes), in_chans=1 if bundle.mode == "L" else 3
        )
        .to(device)
        .eval()
    )
    preprocess = BatchPreprocessor(bundle.mean, bundle.std, device)
    amp = "bf16" if device.type == "cuda" else "none"

    def run(views: list[int]) -> torch.Tensor:
        dataset = ImageDataset(
            split, bundle.mode, TTATransform(data, augment, bundle.augment_fill(augment), views, seed=0)
        )
        loader = build_eval_loader(dataset, a.batch_size, a.workers)
        probs, _ = tta_predict(model, loader, preprocess, prediction_probs, chunk_size=a.batch_size, amp=amp)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return probs

    return run, len(split.ids), bundle.mode


def interleaved(run, v: int, repeats: int) -> tuple:
    """TTA runs and rounds of ``v`` single-view passes, alternating which goes first -> their seconds
    (TTA, sum of the passes, each pass) and the last probabilities of each (mean over the passes)."""
    tta_times, pass_times, per_pass = [], [], [[] for _ in range(v)]
    tta_probs = passes_probs = None
    for r in range(repeats):
        for first in (True, False) if r % 2 == 0 else (False, True):
            if first:
                t0 = time.perf_counter()
                tta_probs = run(list(range(v)))
                tta_times.append(time.perf_counter() - t0)
            else:
                probs, total = [], 0.0
                for k in range(v):
                    t0 = time.perf_counter()
                    probs.append(run([k]))
                    per_pass[k].append(time.perf_counter() - t0)
                    total += per_pass[k][-1]
                pass_times.append(total)
                passes_probs = torch.stack(probs).mean(dim=0)
    return tta_times, pass_times, per_pass, tta_probs, passes_probs


def report(a: argparse.Namespace, r: dict, per_pass: list[list[float]]) -> str:
    """The Markdown: seconds and images/s of each single pass, their sum, and the TTA run."""
    v, n, passes_s, tta_s = r["views"], r["images"], r["passes_seconds"], r["tta_seconds"]
    where = r["gpu"] or f"{r['machine']['cpus']} CPUs, {r['machine']['torch_threads']} torch threads"
    rows = [
        [f"single pass, view {k}", f"{statistics.median(p):.3f}", f"{n / statistics.median(p):.0f}"]
        for k, p in enumerate(per_pass)
    ]
    rows += [
        [f"{v} single passes (sum)", f"{passes_s:.3f}", f"{n / passes_s:.0f}"],
        [f"TTA, {v} views in one pass", f"{tta_s:.3f}", f"{n / tta_s:.0f}"],
    ]
    return "\n".join(
        [
            f"# TTA ({v} views, one data pass) vs {v} single-view passes: {a.model} at {a.img_size} px, "
            f"{n} {a.data} test images",
            "",
            f"Median of {a.repeats} interleaved repeats; {where}; batch {a.batch_size}, {a.workers} loader workers; "
            f"views >= 1: flip on odd views + {a.randaugment or 'no RandAugment'}.",
            "",
            markdown_table(["run", "seconds", "images/s"], rows),
            "",
            f"TTA / passes = {r['tta_vs_passes']:.3f} (goal <= 1.05); max |TTA - mean of passes| = "
            f"{r['max_abs_prob_diff']:.2e}",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--data", default="demo")
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--randaugment", default="rand-m9-mstd0.5")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--name", default="tta", help="results file stem")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    run, n, mode = make_runner(a, device)
    v = a.views
    run([0])  # warm-up: allocator, kernels, page cache

    tta_times, pass_times, per_pass, tta_probs, passes_probs = interleaved(run, v, a.repeats)
    tta_s, passes_s = statistics.median(tta_times), statistics.median(pass_times)
    max_diff = float((tta_probs - passes_probs).abs().max())
    ratio = tta_s / passes_s
    result = {
        "views": v,
        "images": n,
        "data": a.data,
        "mode": mode,
        "model": a.model,
        "img_size": a.img_size,
        "randaugment": a.randaugment,
        "batch_size": a.batch_size,
        "workers": a.workers,
        "repeats": a.repeats,
        "device": str(device),
        "tta_seconds": tta_s,
        "tta_all": tta_times,
        "passes_seconds": passes_s,
        "passes_all": pass_times,
        "pass_seconds": [statistics.median(p) for p in per_pass],
        "tta_vs_passes": ratio,
        "max_abs_prob_diff": max_diff,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "machine": {**machine(), "timm": timm.__version__, "python": platform.python_version()},
    }
    write_results(a.out, a.name, result, report(a, result, per_pass), {"tta_vs_passes": f"{ratio:.3f}"})


if __name__ == "__main__":
    main()
