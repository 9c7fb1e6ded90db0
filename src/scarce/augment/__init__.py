"""Augmentations on uint8 data: LSB Swap (functional forms, batch module, pair transform)."""

from scarce.augment.lsb_swap import (
    LsbSwap,
    LsbSwapPair,
    apply_lsb_swap,
    lsb_swap,
    lsb_swap_batch,
    sample_derangement,
    sample_lsb_swap_params,
)

__all__ = [
    "LsbSwap",
    "LsbSwapPair",
    "apply_lsb_swap",
    "lsb_swap",
    "lsb_swap_batch",
    "sample_derangement",
    "sample_lsb_swap_params",
]
