"""Wall clock of ``scarce train`` from process start to exit, against a bare loop doing the same work.

Both sides run as fresh processes, back to back, repeats interleaved, same torch threads:

* scarce: ``scarce train --recipe fashion-mnist-50 epochs=E`` with its default settings
  (checkpoint cadence, workers, caches, final calibration and test scoring);
* bare: the same timm model on the same 500 uint8 images in memory, random crop and flip on
  tensors, val (500 images) after every epoch, the 10k test set once at the end.

The model is the same on both sides (``model.small_input=false`` by default, to keep a repeat to
minutes on a CPU). scarce's own breakdown comes from its ``summary.json`` timings.

    .venv/bin/python benchmarks/end_to_end.py --epochs 20 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402


def bare_main(epochs: int, small_input: bool, threads: int) -> None:
    """The bare side, run in its own process: prints its wall seconds as JSON."""
    start = time.perf_counter()
    import timm
    import torch
    import torch.nn.functional as F
    from bare_loop import MEAN, STD, train_epoch

    from scarce.data.fashion_mnist import load_arrays, sample_per_class
    from scarce.models import adapt_to_small_input

    torch.set_num_threads(threads)
    train_x, train_y = load_arrays(None, "train")
    test_x, test_y = load_arrays(None, "test")
    train_idx, val_idx = sample_per_class(train_y, [50, 50], 0)
    images, labels = torch.from_numpy(train_x[train_idx]).unsqueeze(1), torch.from_numpy(train_y[train_idx])
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10, in_chans=1)
    if small_input:
        adapt_to_small_input(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def score(x, y) -> float:
        model.eval()
        with torch.no_grad():
            hits = sum(
                int(
                    (
                        model(
                            (F.pad(torch.from_numpy(x[i : i + 256]).unsqueeze(1).float() / 255, (2, 2, 2, 2)) - MEAN)
                            / STD
                        ).argmax(1)
                        == torch.from_numpy(y[i : i + 256])
                    ).sum()
                )
                for i in range(0, len(y), 256)
            )
        return hits / len(y)

    for _ in range(epochs):
        model.train()
        train_epoch(model, opt, None, images, labels, gen)
        score(train_x[val_idx], train_y[val_idx])
    top1 = score(test_x, test_y)
    print(json.dumps({"in_process_seconds": time.perf_counter() - start, "test_top1": top1}))


def run_scarce(epochs: int, small_input: bool, threads: int, work: Path) -> dict:
    out = work / f"scarce-{time.monotonic_ns()}"
    start = time.perf_counter()
    subprocess.run(
        [
            str(Path(sys.executable).with_name("scarce")),
            "train",
            "--recipe",
            "fashion-mnist-50",
            "--out",
            str(out),
            "--no-progress",
            f"epochs={epochs}",
            f"threads={threads}",
            f"model.small_input={str(small_input).lower()}",
        ],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    return {"wall": wall, "test_top1": summary["test"]["top1"], **summary["timings"]}


def run_bare(epochs: int, small_input: bool, threads: int) -> dict:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--bare-child", "--epochs", str(epochs), "--threads", str(threads)]
        + (["--small-input"] if small_input else []),
        check=True,
        capture_output=True,
        text=True,
    )
    return {"wall": time.perf_counter() - start, **json.loads(done.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--small-input", action="store_true", help="both sides: the stem without early downsampling")
    p.add_argument("--bare-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.bare_child:
        bare_main(args.epochs, args.small_input, args.threads)
        return {}
    scarce_runs, bare_runs = [], []
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.repeats):  # interleaved: drifts of a shared machine hit both sides alike
            bare_runs.append(run_bare(args.epochs, args.small_input, args.threads))
            scarce_runs.append(run_scarce(args.epochs, args.small_input, args.threads, Path(work)))
    med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    ratio = med(bare_runs, "wall") / med(scarce_runs, "wall")
    parts = ("startup", "train", "val", "save", "final")
    rest = med(scarce_runs, "wall") - sum(med(scarce_runs, k) for k in parts)
    rows = [
        ["bare loop", f"{med(bare_runs, 'wall'):.1f}", "", "", "", "", "", f"{100 * med(bare_runs, 'test_top1'):.2f}"],
        ["scarce train", f"{med(scarce_runs, 'wall'):.1f}"]
        + [f"{med(scarce_runs, k):.1f}" for k in parts]
        + [f"{100 * med(scarce_runs, 'test_top1'):.2f}"],
    ]
    table = markdown_table(
        ["side", "wall s", "startup s", "train s", "val s", "checkpoint s", "final scoring s", "test top-1 %"], rows
    )
    text = (
        f"{table}\n\nmedians of {args.repeats} interleaved repeats, {args.epochs} epochs, {args.threads} threads, "
        f"small_input={args.small_input}; scarce's wall outside the listed parts (interpreter, imports, exit): "
        f"{rest:.1f} s\n"
    )
    write_results(
        HERE / "results",
        "end_to_end",
        {"args": vars(args), "scarce": scarce_runs, "bare": bare_runs, "machine": machine()},
        text,
        {"train_wall_vs_bare": f"{ratio:.3f}"},
    )
    return {"ratio": ratio}


if __name__ == "__main__":
    main()
