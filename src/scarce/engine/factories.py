"""Config -> model, loss, optimizer, scheduler, EMA: the factories, by name."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from scarce.augment.mix import BatchMixer
from scarce.config import Config, MixConfig
from scarce.data.loader import DataBundle
from scarce.engine.hardware import resolve_amp, resolve_channels_last
from scarce.engine.optim_state import unrecordable_setting
from scarce.errors import UserError
from scarce.models.factory import create_model

# Schedulers that step on epochs without a metric (plateau would need one).
SCHEDULERS = ("cosine", "tanh", "step", "multistep", "poly", "constant")


def _unknown(option: str, name: str, valid: list[str]) -> UserError:
    close = difflib.get_close_matches(name, valid, n=5)
    listing = ", ".join(close) if close else ", ".join(valid)
    return UserError(f"{option} '{name}': unknown; {'close matches' if close else 'valid'}: {listing}")


def build_loss(cfg: Config, class_counts: list[int] | None = None, world_size: int = 1) -> torch.nn.Module:
    """The loss of ``loss.name``; with ``loss.class_weights=auto``, weighted by ``class_counts`` (train)
    and normalised over the global batch of ``world_size`` data-parallel ranks."""
    from scarce.losses import LOSS_NAMES, create_loss
    from scarce.losses.class_weights import ClassWeighted, balanced_class_weights
    from scarce.losses.factory import accepted_kwargs

    name = cfg.loss.name
    if name not in LOSS_NAMES:
        raise UserError(f"loss.name '{name}': unknown; valid: {', '.join(LOSS_NAMES)}")
    # the loss.* keys this loss's constructor takes: a switch of loss.name never needs other edits
    kwargs = {key: getattr(cfg.loss, key) for key in accepted_kwargs(name) if hasattr(cfg.loss, key)}
    if cfg.loss.class_weights == "none":
        return create_loss(name, **kwargs)
    if class_counts is None:
        raise ValueError("loss.class_weights=auto needs the train split's class counts")
    weights = balanced_class_weights(class_counts)
    return ClassWeighted(create_loss(name, **kwargs, reduction="none"), weights, world_size=world_size)


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The timm optimizer of ``optim.*``, one whose settings a checkpoint can record."""
    from timm.optim import create_optimizer_v2, list_optimizers

    o = cfg.optim
    if o.name.lower() not in list_optimizers():
        raise _unknown("optim.name", o.name, list_optimizers())
    kwargs = {"eps": o.eps} if o.eps is not None else {}
    # timm hands `momentum` (and `eps`) only to optimizers whose registry entry has one
    # (get_optimizer_info(name).has_momentum: sgdw, lars, madgrad, ... as well as sgd and rmsprop)
    optimizer = create_optimizer_v2(
        model,
        opt=o.name,
        lr=o.lr,
        weight_decay=o.weight_decay,
        momentum=o.momentum,
        filter_bias_and_bn=not o.decay_norm_and_bias,
        **kwargs,
    )
    # refused now rather than at the first checkpoint, an epoch into the run
    setting = unrecordable_setting(optimizer)
    if setting is not None:
        raise UserError(
            f"optim.name '{o.name}': its setting {setting} cannot be written to a checkpoint "
            f"(tensors, dtypes and JSON values can); choose another optimizer"
        )
    return optimizer


def schedule_steps(cfg: Config, updates_per_epoch: int) -> tuple[int, int]:
    """(total optimizer steps, warmup steps) of a run; warmup is clipped to a fifth of the run."""
    total = cfg.epochs * updates_per_epoch
    warmup = round(cfg.sched.warmup_epochs * updates_per_epoch)
    return total, min(warmup, total // 5)


def _multistep_lead() -> int:
    """Updates by which timm's multistep decays before its milestone: 1 in timm 1.0 (it bisects
    ``t + 1``), so a milestone at epoch 3 decayed on the last update of epoch 2. Probed, not
    assumed, so a timm that fixes it is not shifted a step late."""
    from timm.scheduler import MultiStepLRScheduler

    probe = MultiStepLRScheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), decay_t=[1])
    return probe.get_curr_decay_steps(0)


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, updates_per_epoch: int):
    """A timm scheduler stepped per optimizer update (``step_update(global_step)``).

    Counted in steps, so a run of any length trains: warmup ramps ``sched.warmup_lr`` to
    ``optim.lr`` over its first steps (a prefix of the run, clipped to a fifth of it), then the
    decay spans the remaining steps. The lr at step t depends on the config alone, so a
    resumed run follows the schedule of the config in force.
    """
    from timm.scheduler import create_scheduler_v2

    s = cfg.sched
    if s.name not in SCHEDULERS:
        raise _unknown("sched.name", s.name, list(SCHEDULERS))
    total, warmup = schedule_steps(cfg, updates_per_epoch)
    # timm before 1.0.31 has no 'constant' (create_scheduler_v2 returned None): a step schedule
    # that never decays is the same lr curve in every timm version
    constant = s.name == "constant"
    lead = _multistep_lead() if s.name == "multistep" else 0
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched="step" if constant else s.name,
        num_epochs=max(total - warmup, 1),
        decay_epochs=s.decay_epochs * updates_per_epoch,
        # timm counts milestones from the end of a prefix warmup: these are epochs of the run
        decay_milestones=[max(round(m * updates_per_epoch) - warmup, 0) + lead for m in s.decay_milestones],
        decay_rate=1.0 if constant else s.decay_rate,
        min_lr=s.min_lr,
        warmup_lr=s.warmup_lr,
        warmup_epochs=warmup,
        warmup_prefix=True,
        step_on_epochs=False,
        updates_per_epoch=1,
    )
    if scheduler is None:  # timm returns None for a name it does not know
        import timm

        raise UserError(f"sched.name '{s.name}': timm {timm.__version__} builds no such scheduler; upgrade timm")
    return scheduler


@dataclass
class Components:
    """What a run trains with, built from its config."""

    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    ema: object | None
    scaler: torch.amp.GradScaler | None


def build_mixer(mix: MixConfig) -> BatchMixer | None:
    """Mixup / CutMix for the train step (None when both alphas are 0)."""
    if mix.mixup_alpha == 0 and mix.cutmix_alpha == 0:
        return None
    return BatchMixer(mix.mixup_alpha, mix.cutmix_alpha, prob=mix.prob, switch_prob=mix.switch_prob)


def build_components(
    cfg: Config,
    data: DataBundle,
    device: torch.device,
    updates_per_epoch: int,
    world_size: int = 1,
    channels_last: bool | None = None,
) -> Components:
    """model, loss_fn, optimizer, scheduler (per update), ema, scaler for a run (one DDP rank's);
    ``channels_last`` as resolved for the run (None: ``cfg.channels_last``'s fixed rule)."""
    from scarce.losses import loss_requires_head_g

    train_targets = torch.as_tensor(data.splits["train"].targets)
    class_counts = torch.bincount(train_targets, minlength=len(data.classes)).tolist()
    loss_fn = build_loss(cfg, class_counts, world_size=world_size)
    model = create_model(
        cfg.model, len(data.classes), data.in_chans, cfg.data.img_size, head_g=loss_requires_head_g(cfg.loss.name)
    )
    model = model.to(device)
    if resolve_channels_last(cfg.channels_last, device) if channels_last is None else channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model)
    ema = None
    if cfg.ema.enabled:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.ema.decay, use_warmup=cfg.ema.warmup, device=device)
    scaler = torch.amp.GradScaler("cuda") if resolve_amp(cfg.amp, device) == "fp16" and device.type == "cuda" else None
    return Components(
        model=model,
        loss_fn=loss_fn.to(device),
        optimizer=optimizer,
        scheduler=build_scheduler(cfg, optimizer, updates_per_epoch),
        ema=ema,
        scaler=scaler,
    )


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
