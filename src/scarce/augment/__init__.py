"""Augmentations: LSB Swap on uint8 data (functional forms, batch module, pair transform) and
mixup / CutMix on the float batch (the loss is mixed)."""

from scarce.augment.lsb_swap import (
    LsbSwap,
    LsbSwapPair,
    apply_lsb_swap,
    lsb_swap,
    lsb_swap_batch,
    sample_derangement,
    sample_lsb_swap_params,
)
from scarce.augment.mix import BatchMixer, MixParams, apply_mix, mixed_loss, sample_mix_params

__all__ = [
    "BatchMixer",
    "LsbSwap",
    "LsbSwapPair",
    "MixParams",
    "apply_lsb_swap",
    "apply_mix",
    "lsb_swap",
    "lsb_swap_batch",
    "mixed_loss",
    "sample_derangement",
    "sample_lsb_swap_params",
    "sample_mix_params",
]
