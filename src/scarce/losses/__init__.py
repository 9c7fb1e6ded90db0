"""Losses: cross-entropy, label smoothing, cosine (Barz & Denzler), focal, Focal Cosine (Kim et al.)."""

from scarce.losses.cosine import CosineCELoss, CosineLoss, cosine_ce_loss, cosine_loss
from scarce.losses.factory import (
    LOSS_NAMES,
    CrossEntropy,
    LabelSmoothingCE,
    create_loss,
    loss_prediction_source,
    loss_requires_head_g,
)
from scarce.losses.focal import FOCAL_COSINE_VARIANTS, FocalCosineLoss, FocalLoss, focal_cosine_loss, focal_loss

__all__ = [
    "cosine_loss",
    "cosine_ce_loss",
    "focal_loss",
    "focal_cosine_loss",
    "CrossEntropy",
    "LabelSmoothingCE",
    "CosineLoss",
    "CosineCELoss",
    "FocalLoss",
    "FocalCosineLoss",
    "FOCAL_COSINE_VARIANTS",
    "LOSS_NAMES",
    "create_loss",
    "loss_requires_head_g",
    "loss_prediction_source",
]
