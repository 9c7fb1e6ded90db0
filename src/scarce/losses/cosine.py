"""Cosine loss (Barz & Denzler, WACV 2020) and its cosine + cross-entropy variant.

The cosine loss compares the L2-normalised embedding psi(f(x)) [B, C] with the
one-hot target: ``1 - cos(psi(f(x)), onehot(y)) = 1 - normalize(psi(f(x)))[y]``.
It ignores the embedding's scale, which is why it behaves well on small data.

Shared helpers for the other loss files (reductions, input checks) live here too; the
model-output contract (``split_outputs``, ``NORMALIZE_EPS``) is ``scarce.models.heads``'.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from scarce.models.heads import NORMALIZE_EPS, Outputs, split_outputs

__all__ = ["cosine_loss", "cosine_ce_loss", "CosineLoss", "CosineCELoss", "NORMALIZE_EPS", "REDUCTIONS"]


REDUCTIONS = ("mean", "sum", "none")


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """Half/bfloat16 -> float32: under autocast eps (and log-probs) underflow in half."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply 'mean' | 'sum' | 'none' to a per-sample loss [B]."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")


def _check_inputs(scores: torch.Tensor, target: torch.Tensor, what: str) -> None:
    if scores.ndim != 2:
        raise ValueError(f"{what} must be [B, C], got shape {tuple(scores.shape)}")
    if target.ndim != 1 or target.shape[0] != scores.shape[0]:
        raise ValueError(f"target must be [B] with B={scores.shape[0]}, got shape {tuple(target.shape)}")


def cosine_loss(embedding: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``1 - normalize(embedding)[i, target_i]``.

    embedding: [B, C] (psi's output, one dimension per class); target: Long [B].
    A zero embedding gives cosine 0 (loss 1) with a finite gradient.
    """
    _check_inputs(embedding, target, "embedding")
    _check_reduction(reduction)
    z = F.normalize(_upcast(embedding), p=2.0, dim=1, eps=NORMALIZE_EPS)
    # <onehot(y), z> is just z's y-th coordinate: no need to build the one-hot matrix.
    cos = z.gather(1, target.long().unsqueeze(1)).squeeze(1)
    return _reduce(1.0 - cos, reduction)


def cosine_ce_loss(
    embedding: torch.Tensor, aux_logits: torch.Tensor, target: torch.Tensor, lam: float = 0.1, reduction: str = "mean"
) -> torch.Tensor:
    """Barz & Denzler: ``cosine_loss(embedding) + lam * cross_entropy(aux_logits)``.

    embedding, aux_logits: [B, C] (aux_logits = g(normalize(embedding))); target: Long [B].
    """
    _check_inputs(aux_logits, target, "aux_logits")
    _check_reduction(reduction)
    cos = cosine_loss(embedding, target, reduction="none")
    ce = F.cross_entropy(_upcast(aux_logits), target.long(), reduction="none")
    return _reduce(cos + lam * ce, reduction)


class CosineLoss(nn.Module):
    """Module form of :func:`cosine_loss`; uses ``outputs["logits"]`` (or the Tensor) as embedding."""

    aux_head: str = "none"
    normalized_embedding: bool = True

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction

    def forward(self, outputs: Outputs, target: torch.Tensor) -> torch.Tensor:
        embedding, _ = split_outputs(outputs, who=type(self).__name__)
        return cosine_loss(embedding, target, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class CosineCELoss(nn.Module):
    """Module form of :func:`cosine_ce_loss`; needs a model wrapped with head g."""

    aux_head: str = "g"
    normalized_embedding: bool = True

    def __init__(self, lam: float = 0.1, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.lam = float(lam)
        self.reduction = reduction

    def forward(self, outputs: Outputs, target: torch.Tensor) -> torch.Tensor:
        embedding, aux = split_outputs(outputs, need_aux=True, who=type(self).__name__)
        return cosine_ce_loss(embedding, aux, target, lam=self.lam, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, reduction={self.reduction!r}"
