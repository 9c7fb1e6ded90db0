"""timm models by name, trained from scratch (never downloads weights)."""

from __future__ import annotations

import difflib

import timm
import torch.nn as nn

from scarce.config import ModelConfig
from scarce.errors import UserError
from scarce.models.small_input import adapt_to_small_input, wants_small_input


def create_model(cfg: ModelConfig, num_classes: int, in_chans: int, img_size: int, head_g: bool = False) -> nn.Module:
    """``timm.create_model`` with ``pretrained=False``, its stem adapted to ``img_size`` per
    ``cfg.small_input`` (:mod:`scarce.models.small_input`); ``head_g`` adds the focal-cosine head g.

    An unknown name fails listing the closest timm names.
    """
    if not timm.is_model(cfg.name):
        close = difflib.get_close_matches(cfg.name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else "; see timm.list_models()"
        raise UserError(f"model.name '{cfg.name}': not a timm model{hint}")
    kwargs = {"drop_rate": cfg.drop_rate}
    if cfg.drop_path_rate > 0:  # not every architecture takes drop_path_rate
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    try:
        model = timm.create_model(cfg.name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as exc:
        raise UserError(f"model.name '{cfg.name}': does not accept these options ({exc})") from None
    if wants_small_input(cfg.small_input, img_size, model):
        adapt_to_small_input(model)
    if head_g:
        from scarce.models.heads import wrap_with_head_g

        model = wrap_with_head_g(model, num_classes)
    return model


def backbone_of(model: nn.Module) -> nn.Module:
    """The plain timm model inside DDP and head-g wrappers."""
    from scarce.models.heads import CosineHeadModel

    model = getattr(model, "module", model)
    return model.backbone if isinstance(model, CosineHeadModel) else model
