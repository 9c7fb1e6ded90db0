"""Focal loss (Lin et al. 2017) and Focal Cosine Loss (Kim et al. 2020, VIPriors).

Focal Cosine Loss = ``1 - <onehot(y), normalize(psi(f(x)))> + lam * FL(y, softmax(g(normalize(psi(f(x))))))``
with lam = 0.1, gamma = 2. The paper writes ``- lam * FL``; FL as defined is already
positive (it is a weighted negative log-likelihood), so the intended objective *adds*
it, as Barz & Denzler add their cross-entropy term. We add it.

Two variants:
- ``'g'`` (default, the paper's formula): the focal term is on head g's logits.
- ``'authors'`` (what the authors' public code did): no head g; the focal term is a
  softmax over the L2-normalised logits at temperature 1. With C classes p_y is at most
  e / (e + C - 1), so for large C the focal factor is ~1 and the term is ~lam * CE.
  Kept for reproduction only.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from scarce.losses.cosine import (
    NORMALIZE_EPS,
    Outputs,
    _check_inputs,
    _check_reduction,
    _reduce,
    _upcast,
    cosine_loss,
    split_outputs,
)

__all__ = ["focal_loss", "focal_cosine_loss", "FocalLoss", "FocalCosineLoss", "FOCAL_COSINE_VARIANTS"]

FOCAL_COSINE_VARIANTS = ("g", "authors")


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, reduction: str = "mean") -> torch.Tensor:
    """``-(1 - p_t)**gamma * log(p_t)`` with p_t = softmax(logits)[target].

    logits: [B, C]; target: Long [B]. gamma = 0 is cross-entropy.
    """
    _check_inputs(logits, target, "logits")
    _check_reduction(reduction)
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    # log_softmax, not log(softmax): stable for large logits.
    logp_t = F.log_softmax(_upcast(logits), dim=1).gather(1, target.long().unsqueeze(1)).squeeze(1)
    # 1 - p_t via expm1 keeps precision when p_t ~ 1; the tiny floor avoids 0**(gamma-1)
    # = inf (-> NaN gradient) for gamma < 1 when p_t rounds to exactly 1.
    one_minus_p = (-torch.expm1(logp_t)).clamp(min=1e-12)
    loss = -(one_minus_p**gamma) * logp_t
    return _reduce(loss, reduction)


def focal_cosine_loss(
    embedding: torch.Tensor,
    aux_logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    lam: float = 0.1,
    reduction: str = "mean",
) -> torch.Tensor:
    """``cosine_loss(embedding) + lam * focal_loss(aux_logits, gamma)``.

    embedding, aux_logits: [B, C]; target: Long [B]. The paper's "- lambda * FL" is a
    sign slip: FL >= 0 and the intended objective adds it (see the module docstring).
    For the authors' variant pass ``aux_logits = normalize(embedding)``.
    """
    _check_reduction(reduction)
    cos = cosine_loss(embedding, target, reduction="none")
    fl = focal_loss(aux_logits, target, gamma=gamma, reduction="none")
    return _reduce(cos + lam * fl, reduction)


class FocalLoss(nn.Module):
    """Module form of :func:`focal_loss` on the logits (Tensor or ``outputs["logits"]``)."""

    aux_head: str = "none"
    normalized_embedding: bool = False

    def __init__(self, gamma: float = 2.0, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.reduction = reduction

    def forward(self, outputs: Outputs, target: torch.Tensor) -> torch.Tensor:
        logits, _ = split_outputs(outputs, who=type(self).__name__)
        return focal_loss(logits, target, gamma=self.gamma, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, reduction={self.reduction!r}"


class FocalCosineLoss(nn.Module):
    """Module form of :func:`focal_cosine_loss`.

    variant='g' (default): needs head g (``aux_head == 'g'``), focal term on ``aux_logits``.
    variant='authors': no head g (``aux_head == 'none'``), focal term on
    softmax(normalize(logits)) at temperature 1, as in the authors' code.
    """

    aux_head: str = "g"  # the instance attribute says 'none' for variant='authors'
    normalized_embedding: bool = True

    def __init__(self, gamma: float = 2.0, lam: float = 0.1, variant: str = "g", reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        if variant not in FOCAL_COSINE_VARIANTS:
            raise ValueError(f"unknown focal cosine variant {variant!r}; valid: {', '.join(FOCAL_COSINE_VARIANTS)}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.lam = float(lam)
        self.variant = variant
        self.reduction = reduction
        self.aux_head = "g" if variant == "g" else "none"

    def forward(self, outputs: Outputs, target: torch.Tensor) -> torch.Tensor:
        need_g = self.variant == "g"
        embedding, aux = split_outputs(outputs, need_aux=need_g, who=type(self).__name__)
        if not need_g:
            # Authors' variant ignores any aux_logits: softmax over cosine scores, T = 1.
            aux = F.normalize(_upcast(embedding), p=2.0, dim=1, eps=NORMALIZE_EPS)
        return focal_cosine_loss(embedding, aux, target, gamma=self.gamma, lam=self.lam, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, lam={self.lam}, variant={self.variant!r}, reduction={self.reduction!r}"
