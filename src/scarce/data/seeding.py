"""Seeds of data order and augmentation: one integer (``cfg.seed``) fixes every draw, in any
worker, on any number of processes."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_worker(worker_id: int) -> None:
    # torch seeds `random` and itself per worker; timm's RandAugment also draws from numpy.
    np.random.seed(torch.initial_seed() % 2**32)


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % 2**63


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample ``index``'s augmentation in ``epoch``: the same in any worker."""
    return (epoch_seed(seed, epoch) * 1_000_033 + index) % 2**63


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed python, numpy and torch (CPU) for a block, then restore their previous states, so
    per-sample seeding in the main process (``num_workers=0``) leaves dropout's stream alone.

    Uses ``torch.default_generator`` directly: ``torch.manual_seed`` also queues a lazy CUDA
    seed with a stack trace, ~100x slower, per sample.
    """
    states = random.getstate(), np.random.get_state(), torch.default_generator.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.default_generator.set_state(states[2])
