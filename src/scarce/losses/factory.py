"""Cross-entropy modules and the loss registry ``create_loss``.

Every loss module is called as ``loss_fn(outputs, target)`` (outputs: Tensor [B, C] or
dict with "logits"/"aux_logits"; target: Long [B]) and carries two class attributes
the trainer reads:
- ``aux_head``: 'g' if the model must be wrapped with head g
  (:func:`scarce.models.heads.wrap_with_head_g`), else 'none';
- ``normalized_embedding``: True for the cosine family, whose "logits" are an
  embedding to be compared by cosine, not calibrated logits.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from scarce.losses.cosine import CosineCELoss, CosineLoss, Outputs, _check_reduction, _upcast, split_outputs
from scarce.losses.focal import FocalCosineLoss, FocalLoss

__all__ = [
    "CrossEntropy",
    "LabelSmoothingCE",
    "LOSS_NAMES",
    "accepted_kwargs",
    "create_loss",
    "loss_requires_head_g",
    "loss_prediction_source",
]


class CrossEntropy(nn.Module):
    """Plain cross-entropy on the logits (Tensor or ``outputs["logits"]``)."""

    aux_head: str = "none"
    normalized_embedding: bool = False

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction

    def forward(self, outputs: Outputs, target: torch.Tensor) -> torch.Tensor:
        logits, _ = split_outputs(outputs, who=type(self).__name__)
        return F.cross_entropy(_upcast(logits), target.long(), reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class LabelSmoothingCE(nn.Module):
    """Cross-entropy with label smoothing: ``(1 - s) * NLL + s * mean_c(-log p_c)``.

    Same definition as ``timm.loss.LabelSmoothingCrossEntropy``; torch's built-in
    ``label_smoothing`` is used because it also supports reduction='sum'|'none'.
    """

    aux_head: str = "none"
    normalized_embedding: bool = False

    def __init__(self, smoothing: float = 0.1, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = float(smoothing)
        self.reduction = reduction

    def forward(self, outputs: Outputs, target: torch.Tensor) -> torch.Tensor:
        logits, _ = split_outputs(outputs, who=type(self).__name__)
        return F.cross_entropy(_upcast(logits), target.long(), reduction=self.reduction, label_smoothing=self.smoothing)

    def extra_repr(self) -> str:
        return f"smoothing={self.smoothing}, reduction={self.reduction!r}"


# name -> (class, kwargs fixed by the name). Fixed kwargs cannot be overridden.
_REGISTRY: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {
    "ce": (CrossEntropy, {}),
    "label_smoothing": (LabelSmoothingCE, {}),
    "cosine": (CosineLoss, {}),
    "cosine_ce": (CosineCELoss, {}),
    "focal": (FocalLoss, {}),
    "focal_cosine": (FocalCosineLoss, {"variant": "g"}),
    "focal_cosine_authors": (FocalCosineLoss, {"variant": "authors"}),
}

LOSS_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def accepted_kwargs(name: str) -> tuple[str, ...]:
    """The constructor arguments loss ``name`` takes (those its name does not fix)."""
    cls, fixed = _REGISTRY[name]
    params = inspect.signature(cls.__init__).parameters
    return tuple(p for p in params if p != "self" and p not in fixed)


def _lookup(name: str) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSS_NAMES)}")
    return _REGISTRY[name]


def create_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a loss module by name (one of ``LOSS_NAMES``).

    kwargs are the class's constructor arguments (e.g. ``gamma``, ``lam``, ``smoothing``,
    ``reduction``); an argument the loss does not take raises ValueError naming it.
    """
    cls, fixed = _lookup(name)
    accepted = accepted_kwargs(name)
    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown:
        raise ValueError(
            f"loss {name!r} got unknown argument(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted) if accepted else '(none)'}"
        )
    return cls(**fixed, **kwargs)


def loss_requires_head_g(name: str) -> bool:
    """True if loss ``name`` needs the model wrapped with head g (its ``aux_head == 'g'``)."""
    return create_loss(name).aux_head == "g"


def loss_prediction_source(loss: str | nn.Module) -> str:
    """Default prediction source for a loss (see ``scarce.models.heads.PREDICTION_SOURCES``).

    'cosine' for the cosine family, head g or not (their logits are an embedding whose
    scale nothing controls; the fitted temperature calibrates the fixed-scale cosine
    scores), else 'logits'. Head g is not the default: trained at weight lam=0.1 it lags
    far behind the cosine scores it sits on (Fashion-MNIST 50/class, focal_cosine:
    test top-1 0.52 from g vs 0.76 from the cosine scores of the same weights; see
    BENCHMARKS.md). ``model.prediction_source=g`` still selects it.
    """
    mod = create_loss(loss) if isinstance(loss, str) else loss
    return "cosine" if getattr(mod, "normalized_embedding", False) else "logits"
