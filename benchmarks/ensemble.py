"""Benchmark: ensemble voting time vs the time to read the members' predictions.

Generates M members' float32 probabilities ``[N, C]`` (default 10 x 50,000 x 1,000, the
size of a 10-model ImageNet-val ensemble: 2 GB), saves each as ``.npy`` in a temporary
folder, then times (median of ``--repeats``):

- read: ``np.load`` of every member file (just written, so mostly from the page cache:
  a lower bound on the read time of a cold disk);
- vote: ``plurality_vote(threshold=0.7)`` plus ``soft_vote`` on the loaded ``[M, N, C]``.

Goal: vote < 2 s and vote within 3x of the read. Writes ``benchmarks/results/ensemble.md``
and ``.json``; the last lines printed are ``vote_seconds: X`` and ``vote_vs_read: X``.

    PYTHONPATH=src python benchmarks/ensemble.py [--members 10 --samples 50000 --classes 1000]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, median_seconds, write_results  # noqa: E402

from scarce.inference.voting import plurality_vote, soft_vote  # noqa: E402

RESULTS = HERE / "results"


def make_members(folder: Path, m: int, n: int, c: int, seed: int) -> tuple[list[Path], float]:
    """Write M ``.npy`` files of softmax probabilities; returns the paths and the voted fraction.

    Logits are ``2 * randn`` plus a per-row boost ``U(0, 10)`` on a shared "true" class,
    so members often agree and the base model is confident on some rows, as with real
    models; pure noise would make every row a 10-way tie (an unrealistic worst case).
    """
    g = torch.Generator().manual_seed(seed)
    truth = torch.randint(0, c, (n, 1), generator=g)
    paths, voted = [], 0.0
    for i in range(m):
        logits = torch.randn(n, c, generator=g).mul_(2.0)
        logits.scatter_add_(1, truth, torch.rand(n, 1, generator=g) * 10)
        probs = torch.softmax(logits, dim=1).numpy()
        if i == 0:
            voted = float((probs.max(axis=1) < 0.7).mean())
        paths.append(folder / f"member{i}.npy")
        np.save(paths[-1], probs)
        del logits, probs
    return paths, voted


def report(r: dict, gb: float, voted: float) -> str:
    """The Markdown: one row per timed step (seconds and GB/s), then vote / read."""
    m, n, c = r["members"], r["samples"], r["classes"]
    steps = [
        (f"read (np.load, {m} .npy files)", r["read_seconds"]),
        ("plurality_vote (threshold 0.7)", r["plurality_seconds"]),
        ("soft_vote", r["soft_seconds"]),
        ("vote = plurality + soft", r["vote_seconds"]),
    ]
    table = markdown_table(["step", "seconds", "GB/s"], [[name, f"{t:.3f}", f"{gb / t:.2f}"] for name, t in steps])
    return "\n".join(
        [
            f"# Ensemble voting vs reading: {m} members x {n:,} samples x {c:,} classes (float32, {gb:.1f} GB)",
            "",
            f"Median of {r['repeats']}; {r['machine']['cpus']} CPUs, {r['machine']['torch_threads']} torch threads; "
            f"base unconfident (< 0.7, voted) on {voted:.0%} of rows; reads from a warm page cache.",
            "",
            table,
            "",
            f"vote / read = {r['vote_vs_read']:.2f} (goal: vote < 2 s and <= 3x the read)",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--samples", type=int, default=50_000)
    ap.add_argument("--classes", type=int, default=1_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    m, n, c = a.members, a.samples, a.classes

    with tempfile.TemporaryDirectory(prefix="scarce-bench-ensemble-") as tmp:
        paths, voted = make_members(Path(tmp), m, n, c, a.seed)
        read_s = median_seconds(lambda: [np.load(p) for p in paths], a.repeats, warmup=0)
        # One [M, N, C] array for voting, filled file by file (no list + stack copy).
        stack = np.empty((m, n, c), dtype=np.float32)
        for i, p in enumerate(paths):
            stack[i] = np.load(p, mmap_mode="r")

    def vote():
        return plurality_vote(stack[0], stack, threshold=0.7), soft_vote(stack)

    plur_s = median_seconds(lambda: plurality_vote(stack[0], stack, threshold=0.7), a.repeats, warmup=0)
    soft_s = median_seconds(lambda: soft_vote(stack), a.repeats, warmup=0)
    vote_s = median_seconds(vote, a.repeats, warmup=0)
    gb = stack.nbytes / 1e9
    result = {
        "members": m,
        "samples": n,
        "classes": c,
        "gigabytes": round(gb, 3),
        "repeats": a.repeats,
        "voted_fraction": round(voted, 4),
        "read_seconds": read_s,
        "plurality_seconds": plur_s,
        "soft_seconds": soft_s,
        "vote_seconds": vote_s,
        "vote_vs_read": vote_s / read_s,
        "machine": {**machine(), "numpy": np.__version__, "python": platform.python_version()},
    }
    write_results(
        a.out,
        "ensemble",
        result,
        report(result, gb, voted),
        {"vote_seconds": f"{vote_s:.3f}", "vote_vs_read": f"{vote_s / read_s:.2f}"},
    )


if __name__ == "__main__":
    main()
