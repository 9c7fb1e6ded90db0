"""Mixup and CutMix on a float batch, with the loss mixed instead of the targets.

Zhang et al. 2018 (mixup) and Yun et al. 2019 (CutMix), as timm's ``Mixup`` offers them in
its "batch" mode: one mixing weight per batch, image ``i`` paired with image ``B - 1 - i``
(``x.flip(0)``: the loader shuffles, so the pairs are random, and no image of an even batch is
its own partner). timm turns the labels into soft targets; here the loss is mixed instead,
``lam * loss(out, y) + (1 - lam) * loss(out, y.flip(0))``, which equals soft-target
cross-entropy for CE and works unchanged for every loss of :mod:`scarce.losses` (cosine,
focal cosine with head g, class weights) that takes integer labels.

Randomness is split from application (kornia style): :func:`sample_mix_params` draws,
:func:`apply_mix` is deterministic, :func:`mixed_loss` combines the two losses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["BatchMixer", "MixParams", "apply_mix", "describe_mix", "mixed_loss", "sample_mix_params"]


@dataclass(frozen=True)
class MixParams:
    """One batch's mixing: ``lam`` the weight of each image's own label (for CutMix: the share
    of its pixels kept), ``box`` ``(y0, y1, x0, x1)`` of the patch pasted from the partner
    (CutMix) or None (mixup: a blend of whole images)."""

    lam: float
    box: tuple[int, int, int, int] | None = None


def _cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    # a patch of area (1 - lam) centred anywhere, clipped at the borders (so lam is recomputed)
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return y0, y1, x0, x1


def sample_mix_params(
    height: int,
    width: int,
    *,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    generator: torch.Generator,
) -> MixParams | None:
    """Draw one batch's mixing, or None (the batch stays as it is: with probability
    ``1 - prob``, or when both alphas are 0). With both alphas > 0, CutMix is chosen with
    probability ``switch_prob``. Mixup: ``lam ~ Beta(alpha, alpha)``; CutMix: a box of area
    ``(1 - Beta(alpha, alpha))`` of the image, centred anywhere and clipped at the borders, and
    ``lam`` the share of pixels it leaves."""
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0; got {mixup_alpha}, {cutmix_alpha}")
    if not (0.0 <= prob <= 1.0 and 0.0 <= switch_prob <= 1.0):
        raise ValueError(f"prob and switch_prob must be probabilities; got {prob}, {switch_prob}")
    if mixup_alpha == 0 and cutmix_alpha == 0:
        return None
    # numpy has the Beta sampler torch's generators lack; its seed comes from the generator
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (), generator=generator)))
    if rng.random() >= prob:
        return None
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha == 0 or rng.random() < switch_prob)
    lam = float(rng.beta(cutmix_alpha, cutmix_alpha) if use_cutmix else rng.beta(mixup_alpha, mixup_alpha))
    if not use_cutmix:
        return MixParams(lam)
    box = _cutmix_box(height, width, lam, rng)
    area = (box[1] - box[0]) * (box[3] - box[2])
    return MixParams(1.0 - area / (height * width), box)


def apply_mix(x: Tensor, params: MixParams | None) -> Tensor:
    """``x`` [B, C, H, W] float -> the mixed batch: ``x`` itself when nothing is mixed, else a new
    tensor (``x`` is never changed)."""
    if params is None or (params.lam == 1.0 and params.box is None):
        return x
    partner = x.flip(0)
    if params.box is None:
        return x * params.lam + partner * (1.0 - params.lam)
    y0, y1, x0, x1 = params.box
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = partner[:, :, y0:y1, x0:x1]
    return out


def mixed_loss(loss_fn: Callable, outputs, target: Tensor, params: MixParams | None) -> Tensor:
    """``lam * loss_fn(outputs, target) + (1 - lam) * loss_fn(outputs, target.flip(0))``."""
    if params is None:
        return loss_fn(outputs, target)
    return params.lam * loss_fn(outputs, target) + (1.0 - params.lam) * loss_fn(outputs, target.flip(0))


def describe_mix(mixup_alpha: float, cutmix_alpha: float, prob: float = 1.0) -> str | None:
    """``"mixup 0.8 / cutmix 1 (p 0.5)"`` for logs and titles; None when mixing is off."""
    mixes = [f"{name} {alpha:g}" for name, alpha in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha)) if alpha]
    return " / ".join(mixes) + (f" (p {prob:g})" if prob < 1 else "") if mixes else None


class BatchMixer:
    """The train step's mixing: ``mixer(x) -> (mixed x, params)``; reseed per epoch (``seed``)."""

    def __init__(self, mixup_alpha: float, cutmix_alpha: float, prob: float = 1.0, switch_prob: float = 0.5):
        self.kwargs = dict(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=prob, switch_prob=switch_prob)
        self.generator = torch.Generator()

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def __call__(self, x: Tensor) -> tuple[Tensor, MixParams]:
        params = sample_mix_params(x.shape[2], x.shape[3], **self.kwargs, generator=self.generator)
        if params is None:
            # an unmixed batch still takes both loss calls: under DDP each rank draws its own
            # batches, and a loss that all-reduces (class weights) must be called as often on every rank
            params = MixParams(1.0)
        return apply_mix(x, params), params

    def __repr__(self) -> str:
        return f"BatchMixer({', '.join(f'{k}={v}' for k, v in self.kwargs.items())})"
