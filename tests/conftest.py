"""Shared fixtures: a tiny generated image folder and a fast training config."""

from __future__ import annotations

import os
import signal
from pathlib import Path

# `make test` runs with OMP_NUM_THREADS=1. A bare `pytest -n 2` without it oversubscribed the cores
# (each worker's torch, and each run's `threads` default, took all of them): 530 s instead of 90.
# Set before anything imports torch; an explicit setting in the environment wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
from PIL import Image

# A run that takes seconds on 2 CPU cores: tiny timm model, 16 px, demo data.
TINY = [
    "epochs=2",
    "batch_size=16",
    "model.name=test_resnet",
    "data.img_size=16",
    "data.num_workers=0",
    "optim.lr=0.01",
    "sched.warmup_epochs=0",
    "model.small_input=false",
    # fixed speed settings: results do not depend on this machine's CPU (nor on a timed choice),
    # and the suite runs alike on a machine with a GPU
    "amp=none",
    "channels_last=false",
    "device=cpu",
]


def make_image_folder(
    root: Path, classes=("cat", "dog", "emu"), per_split=None, size=20, mode="RGB", seed: int = 0
) -> Path:
    """root/{train,val,test}/<class>/<n>.png with a class-dependent mean colour (learnable)."""
    per_split = per_split or {"train": 8, "val": 4, "test": 4}
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    for split, count in per_split.items():
        for ci, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                base = 40 + 80 * ci
                arr = np.clip(rng.normal(base, 20, size=(size, size, channels)), 0, 255).astype(np.uint8)
                Image.fromarray(arr.squeeze(-1) if channels == 1 else arr, mode).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def one_thread():
    """torch on 1 thread for a module: tiny models gain nothing from threads, and on a
    shared 2-core machine extra threads only contend."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "data")


def sigterm_after_epoch(monkeypatch, epoch: int = 1) -> None:
    """Send this process SIGTERM right after the trainer logs ``epoch`` to metrics.jsonl."""
    import scarce.engine.trainer as trainer

    real = trainer.append_jsonl

    def append_then_signal(path, record):
        real(path, record)
        if record["epoch"] == epoch:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(trainer, "append_jsonl", append_then_signal)
