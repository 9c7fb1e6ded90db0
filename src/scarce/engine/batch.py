"""Device-side batch preparation: uint8 ``[B, C, H, W]`` -> normalised float.

Done on the device rather than in workers: it is cheap there, and it keeps
the uint8 batch as the last point where the batch stage of LSB Swap acts
before the bits are blurred by float conversion.
"""

from __future__ import annotations

import torch

from scarce.config import AugmentConfig


class BatchPreprocessor:
    """``(x uint8 [B,C,H,W], train) -> float [B,C,H,W]`` on ``device``.

    Train batches get LSB Swap (batch stage, on uint8) and random erasing
    (after normalisation, as timm does). ``generator`` (CPU) drives LSB Swap;
    reseed it per epoch for reproducible runs.
    """

    def __init__(
        self,
        mean: list[float],
        std: list[float],
        device: torch.device,
        augment: AugmentConfig | None = None,
        channels_last: bool = False,
    ):
        self.device = device
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255.0
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.generator = torch.Generator()
        swap = augment.lsb_swap if augment is not None else None
        self.swap = swap if swap is not None and swap.enabled and swap.stage == "batch" else None
        self.random_erasing = None
        if augment is not None and augment.re_prob > 0:
            from timm.data.random_erasing import RandomErasing

            self.random_erasing = RandomErasing(augment.re_prob, mode=augment.re_mode, device=str(device))

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def __call__(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if train and self.swap is not None and x.shape[0] >= 2:
            from scarce.augment import lsb_swap_batch

            x = lsb_swap_batch(x, bits=self.swap.bits, p=self.swap.p, generator=self.generator)
        x = x.to(memory_format=self.memory_format).float().sub_(self.mean).div_(self.std)
        if train and self.random_erasing is not None:
            x = self.random_erasing(x)
        return x
