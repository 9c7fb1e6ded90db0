"""Head g on top of a timm classifier (Barz & Denzler), and prediction sources.

A timm model f with C outputs plays psi(f(x)): its "logits" are the embedding that
the cosine losses normalise. Head g = ReLU -> BatchNorm1d(C) -> Linear(C, C) reads
the *normalised* embedding and gives "aux_logits", trained by the cross-entropy /
focal term. Because g sees a unit vector, its softmax has a scale the loss controls,
which makes it the calibrated confidence the raw logits are not.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "CosineHeadModel",
    "wrap_with_head_g",
    "make_head_g",
    "PREDICTION_SOURCES",
    "DEFAULT_COSINE_SCALE",
    "prediction_scores",
    "prediction_probs",
]

Outputs = torch.Tensor | Mapping[str, torch.Tensor]

PREDICTION_SOURCES = ("auto", "logits", "g", "cosine")

# Cosine scores lie in [-1, 1]; softmax at scale 1 is nearly uniform (p_y <= e/(e+C-1)).
# A fixed scale of 16 (as in normalised-softmax / CosFace-style heads) lets a confident
# cosine score reach a confident probability; it is fixed, not learned, so the same
# threshold means the same thing across models. Fit a temperature on held-out data on
# top of it (scarce.calibration.fit_temperature) for calibrated confidence.
DEFAULT_COSINE_SCALE = 16.0

# F.normalize's eps for psi, in the losses and the prediction sources alike. Larger than the
# 1e-12 default: the gradient of normalize at a zero vector is ~1/eps, so 1e-8 keeps it
# finite and less explosive, and is still far below any real embedding norm.
NORMALIZE_EPS = 1e-8


def split_outputs(
    outputs: Outputs, need_aux: bool = False, who: str = "loss"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Model outputs (Tensor [B, C] or dict with "logits"/"aux_logits") -> (logits, aux or None)."""
    if isinstance(outputs, torch.Tensor):
        logits, aux = outputs, None
    elif isinstance(outputs, Mapping):
        if "logits" not in outputs:
            raise ValueError(f"{who}: model output dict has no 'logits' key (keys: {sorted(outputs)})")
        logits, aux = outputs["logits"], outputs.get("aux_logits")
    else:
        raise TypeError(f"{who}: expected a Tensor or a dict of Tensors, got {type(outputs).__name__}")
    if need_aux and aux is None:
        raise ValueError(
            f"{who} needs head g's 'aux_logits': wrap the model with "
            "scarce.models.heads.wrap_with_head_g (loss.aux_head == 'g')"
        )
    return logits, aux


def make_head_g(num_classes: int) -> nn.Sequential:
    """g = ReLU -> BatchNorm1d(C) -> Linear(C, C): [B, C] normalised embedding -> [B, C] logits."""
    return nn.Sequential(nn.ReLU(), nn.BatchNorm1d(num_classes), nn.Linear(num_classes, num_classes))


class CosineHeadModel(nn.Module):
    """Wrap a classifier f (its C outputs = psi) with head g.

    forward(x [B, 3, H, W]) -> {"logits": psi(f(x)) [B, C], "aux_logits": g(normalize(psi(f(x)))) [B, C]}
    in train and eval mode alike. ``.backbone`` is the wrapped model.
    Note: g's BatchNorm1d needs batches of more than one sample in train mode.
    """

    def __init__(self, backbone: nn.Module, num_classes: int | None = None) -> None:
        super().__init__()
        if num_classes is None:
            num_classes = getattr(backbone, "num_classes", None)
            if not isinstance(num_classes, int) or num_classes <= 0:
                raise ValueError("num_classes not given and the backbone has no positive .num_classes")
        elif hasattr(backbone, "num_classes") and backbone.num_classes != num_classes:
            raise ValueError(f"num_classes={num_classes} but the backbone outputs {backbone.num_classes} classes")
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.g = make_head_g(self.num_classes)
        # timm helpers (resolve_data_config, ...) read these from the model.
        for attr in ("pretrained_cfg", "default_cfg"):
            if hasattr(backbone, attr):
                setattr(self, attr, getattr(backbone, attr))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = self.backbone(x)
        if not isinstance(emb, torch.Tensor) or emb.ndim != 2 or emb.shape[1] != self.num_classes:
            raise ValueError(
                f"backbone must return logits [B, {self.num_classes}], got "
                f"{tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__}"
            )
        # Normalise in float32: under autocast a half-precision eps underflows to 0.
        z = F.normalize(emb.float(), p=2.0, dim=1, eps=NORMALIZE_EPS)
        return {"logits": emb, "aux_logits": self.g(z)}


def wrap_with_head_g(model: nn.Module, num_classes: int | None = None) -> CosineHeadModel:
    """Return ``CosineHeadModel(model, num_classes)``; a model already wrapped is returned as is."""
    if isinstance(model, CosineHeadModel):
        if num_classes is not None and num_classes != model.num_classes:
            raise ValueError(f"model already wrapped with {model.num_classes} classes, not {num_classes}")
        return model
    return CosineHeadModel(model, num_classes)


def _check_source(source: str) -> None:
    if source not in PREDICTION_SOURCES:
        raise ValueError(f"unknown prediction source {source!r}; valid: {', '.join(PREDICTION_SOURCES)}")


def prediction_scores(
    outputs: Outputs, source: str = "auto", cosine_scale: float = DEFAULT_COSINE_SCALE
) -> torch.Tensor:
    """Pre-softmax scores [B, C] (float32+) for a prediction source.

    'logits': outputs (Tensor) or outputs["logits"]; 'g': outputs["aux_logits"];
    'cosine': normalize(logits) * cosine_scale; 'auto': 'cosine' if aux_logits exist (a head-g model,
    trained by a cosine loss: its cosine scores beat g's, as ``loss_prediction_source`` says) else 'logits'.
    Feed these to ``fit_temperature``; ``prediction_probs`` = softmax(scores / T).
    """
    _check_source(source)
    logits, aux = split_outputs(outputs, who="prediction_scores")
    if source == "auto":
        source = "cosine" if aux is not None else "logits"
    if source == "g":
        if aux is None:
            raise ValueError("prediction source 'g' needs 'aux_logits': the model has no head g")
        scores = aux
    elif source == "cosine":
        scores = F.normalize(logits.float(), p=2.0, dim=1, eps=NORMALIZE_EPS) * cosine_scale
    else:
        scores = logits
    return scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores


def prediction_probs(
    outputs: Outputs, source: str = "auto", temperature: float = 1.0, cosine_scale: float = DEFAULT_COSINE_SCALE
) -> torch.Tensor:
    """Class probabilities [B, C] = softmax(prediction_scores(outputs, source) / temperature).

    source: one of ``PREDICTION_SOURCES``; temperature > 0 (> 1 flattens, < 1 sharpens);
    cosine_scale: fixed multiplier of the cosine scores for source='cosine'.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scores = prediction_scores(outputs, source=source, cosine_scale=cosine_scale)
    return F.softmax(scores / temperature, dim=1)
