"""Config -> model, loss, optimizer, scheduler, EMA: the factories, by name."""
from __future__ import annotations

import difflib
from typing import Callable

import torch

from scarce.config import Config
from scarce.data.loader import DataBundle
from scarce.errors import UserError
from scarce.models.factory import create_model

# Schedulers that step on epochs without a metric (plateau would need one).
SCHEDULERS = ("cosine", "tanh", "step", "multistep", "poly", "constant")
# Which LossConfig keys each loss takes: a switch of loss.name never needs other edits.
LOSS_KWARGS = {"label_smoothing": ("smoothing",), "focal": ("gamma",), "cosine_ce": ("lam",),
               "focal_cosine": ("gamma", "lam"), "focal_cosine_authors": ("gamma", "lam")}


def _unknown(option: str, name: str, valid: list[str]) -> UserError:
    close = difflib.get_close_matches(name, valid, n=5)
    listing = ", ".join(close) if close else ", ".join(valid)
    return UserError(f"{option} '{name}': unknown; {'close matches' if close else 'valid'}: {listing}")


def build_loss(cfg: Config) -> torch.nn.Module:
    from scarce.losses import LOSS_NAMES, create_loss
    name = cfg.loss.name
    if name not in LOSS_NAMES:
        raise UserError(f"loss.name '{name}': unknown; valid: {', '.join(LOSS_NAMES)}")
    kwargs = {key: getattr(cfg.loss, key) for key in LOSS_KWARGS.get(name, ())}
    return create_loss(name, **kwargs)


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2, list_optimizers
    o = cfg.optim
    if o.name.lower() not in list_optimizers():
        raise _unknown("optim.name", o.name, list_optimizers())
    kwargs = {"eps": o.eps} if o.eps is not None else {}
    if o.name.lower() in ("sgd", "momentum", "nesterov", "rmsprop", "rmsproptf"):
        kwargs["momentum"] = o.momentum
    return create_optimizer_v2(model, opt=o.name, lr=o.lr, weight_decay=o.weight_decay, **kwargs)


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer):
    """A timm scheduler, stepped once per epoch by the trainer (warmup included)."""
    from timm.scheduler import create_scheduler_v2
    s = cfg.sched
    if s.name not in SCHEDULERS:
        raise _unknown("sched.name", s.name, list(SCHEDULERS))
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=s.name, num_epochs=cfg.epochs, decay_epochs=s.decay_epochs, decay_rate=s.decay_rate,
        min_lr=s.min_lr, warmup_lr=s.warmup_lr, warmup_epochs=s.warmup_epochs)
    return scheduler


def build_components(cfg: Config, data: DataBundle, device: torch.device) -> dict:
    """model, loss_fn, optimizer, scheduler, ema, scaler for a run."""
    from scarce.losses import loss_requires_head_g
    loss_fn = build_loss(cfg)
    model = create_model(cfg.model, len(data.classes), data.in_chans, head_g=loss_requires_head_g(cfg.loss.name))
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model)
    ema = None
    if cfg.ema.enabled:
        from timm.utils import ModelEmaV3
        ema = ModelEmaV3(model, decay=cfg.ema.decay, use_warmup=cfg.ema.warmup, device=device)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" and device.type == "cuda" else None
    return {"model": model, "loss_fn": loss_fn.to(device), "optimizer": optimizer,
            "scheduler": build_scheduler(cfg, optimizer), "ema": ema, "scaler": scaler}


def prediction_source(cfg: Config) -> str:
    """The run's declared prediction source: model.prediction_source, or the loss's natural one."""
    from scarce.losses import loss_prediction_source
    source = cfg.model.prediction_source
    return loss_prediction_source(cfg.loss.name) if source == "auto" else source


def probs_function(cfg: Config, temperature: float = 1.0) -> Callable:
    """outputs -> probabilities ``[B, C]`` from the run's declared prediction source."""
    from scarce.models.heads import prediction_probs
    source = prediction_source(cfg)
    return lambda outputs: prediction_probs(outputs, source=source, temperature=temperature)
