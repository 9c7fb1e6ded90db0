"""One training epoch and one evaluation pass, torchvision-reference style."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
from tqdm import tqdm

from scarce.augment.mix import BatchMixer, mixed_loss
from scarce.engine.batch import BatchPreprocessor
from scarce.engine.distributed import DistInfo, all_reduce_sum
from scarce.errors import UserError

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the run stops and keeps its last good checkpoint."""


def autocast(device: torch.device, amp: str):
    """Autocast context for the ``amp`` setting (``auto`` resolved for ``device``)."""
    from scarce.engine.hardware import resolve_amp

    dtype = AMP_DTYPES[resolve_amp(amp, torch.device(device))]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def logits_of(outputs) -> torch.Tensor:
    """The classifier output psi ``[B, C]`` of a plain or head-g model."""
    from scarce.models.heads import split_outputs

    return split_outputs(outputs)[0]


@dataclass
class TrainStep:
    """What one optimizer update needs: forward, loss, backward, (unscale, clip), step, EMA, lr.

    ``scaler`` is an fp16 ``GradScaler`` or None; ``scheduler`` a timm scheduler stepped per
    update (``step_update``); ``ema`` a timm ``ModelEmaV3``; ``mixer`` mixup / CutMix (the loss
    is mixed between each image's label and its partner's).
    """

    model: nn.Module
    loss_fn: Callable
    optimizer: torch.optim.Optimizer
    scheduler: object = None
    scaler: torch.amp.GradScaler | None = None
    clip_grad: float | None = None
    ema: object = None
    amp: str = "none"
    mixer: BatchMixer | None = None

    def __call__(self, x: torch.Tensor, target: torch.Tensor, global_step: int) -> torch.Tensor:
        """One update on batch ``x [B, C, H, W]``; returns the loss (on the device, not synced)."""
        mix = None
        if self.mixer is not None:
            x, mix = self.mixer(x)
        with autocast(x.device, self.amp):
            loss = mixed_loss(self.loss_fn, self.model(x), target, mix)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:  # as timm's NativeScaler: scale, unscale, clip, step, update
            self._backward(self.scaler.scale(loss))
            self.scaler.unscale_(self.optimizer)
        else:
            self._backward(loss)
        if self.clip_grad is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model, step=global_step + 1)
        if self.scheduler is not None:
            self.scheduler.step_update(num_updates=global_step + 1)
        return loss.detach()

    def _backward(self, loss: torch.Tensor) -> None:
        if not getattr(self.optimizer, "is_second_order", False):
            loss.backward()
            return
        # a second-order optimizer (timm's adahessian) differentiates the gradients again; torch
        # warns of the grad <-> graph cycle that zero_grad(set_to_none=True) breaks each update
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
            loss.backward(create_graph=True)


def train_one_epoch(
    step: TrainStep,
    loader,
    preprocess: BatchPreprocessor,
    epoch: int,
    global_step: int = 0,
    progress: bool = True,
    info: DistInfo | None = None,
    log_every: int = 50,
) -> tuple[dict, int]:
    """Train for one epoch -> (``{"loss", "images", "seconds", "lr", "updates"}``, new global step).

    The loss sum and a non-finite flag stay on the device; the host reads them every
    ``log_every`` steps and at the end of the epoch (so a NaN stops the run within that many
    steps, before anything is saved). ``lr`` is the learning rate the epoch's last update used.
    ``loss`` is the mean over every process's images (``info``: under torchrun); ``images`` this
    process's count.
    """
    step.model.train()
    device = preprocess.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    non_finite = torch.zeros((), dtype=torch.bool, device=device)
    first_bad = torch.zeros((), device=device)  # the first non-finite loss, for the message
    images, start, lr = 0, time.perf_counter(), step.optimizer.param_groups[0]["lr"]
    together = info is not None and info.enabled
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not progress, dynamic_ncols=True)
    for i, (x, target) in enumerate(bar):
        x = preprocess(x, train=True)
        lr = step.optimizer.param_groups[0]["lr"]
        loss = step(x, target.to(device, non_blocking=True), global_step)
        global_step += 1
        first_bad = torch.where(non_finite, first_bad, loss.float())
        non_finite |= ~torch.isfinite(loss)
        loss_sum += loss.double() * x.shape[0]
        images += x.shape[0]
        if (i + 1) % log_every == 0 or i + 1 == len(loader):
            # under torchrun every process stops at once: one that went on would wait in the next
            # gradient all-reduce for the one that stopped
            anywhere = all_reduce_sum(non_finite.float(), info) > 0 if together else non_finite
            if bool(anywhere):
                here = bool(non_finite)
                loss_was = f"loss is {float(first_bad)}" if here else "loss is not finite in another process"
                raise NonFiniteLossError(f"{loss_was} at epoch {epoch} (by step {global_step})")
            if progress:
                bar.set_postfix(loss=f"{float(loss_sum) / images:.4f}", lr=f"{lr:.2e}")
    seconds = time.perf_counter() - start
    if together:
        totals = torch.stack([loss_sum, torch.tensor(float(images), dtype=torch.float64, device=device)])
        loss_sum, images_everywhere = all_reduce_sum(totals, info).tolist()
    else:
        images_everywhere = images
    return {
        "loss": float(loss_sum) / max(images_everywhere, 1),
        "images": images,
        "seconds": seconds,
        "lr": lr,
        "updates": len(loader),
    }, global_step


def recompute_bn_stats(model: nn.Module, loader, preprocess: BatchPreprocessor) -> None:
    """Precise BatchNorm: replace the running statistics by exact averages over ``loader``
    (``torch.optim.swa_utils.update_bn``, in train mode, no gradients)."""
    from torch.optim.swa_utils import update_bn

    # a last batch of one image has one value per channel on a 1x1 map: train-mode BatchNorm
    # refuses it, and it would add next to nothing to the averages
    update_bn((preprocess(x, train=False) for x, _ in loader if len(x) > 1), model)


@torch.no_grad()
def check_finite_weights(model: nn.Module, epoch: int) -> None:
    """A last step can diverge with a finite loss: refuse to save or score non-finite weights."""
    bad = next((name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())), None)
    if bad is not None:
        raise NonFiniteLossError(f"weights became non-finite ({bad}) at epoch {epoch}")


@torch.no_grad()
def predict_outputs(model: nn.Module, loader, preprocess: BatchPreprocessor, amp: str = "none"):
    """Yield ``(outputs, target)`` per batch in loader order, in eval mode."""
    model.eval()
    for x, target in loader:
        with autocast(preprocess.device, amp):
            outputs = model(preprocess(x, train=False))
        if isinstance(outputs, dict):
            outputs = {k: v.float() for k, v in outputs.items()}
        else:
            outputs = outputs.float()
        yield outputs, target


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    preprocess: BatchPreprocessor,
    num_classes: int,
    info: DistInfo = DistInfo(),
    amp: str = "none",
    probs_fn: Callable | None = None,
) -> dict:
    """Exact top-1 / top-5 / per-class accuracy over the loader (summed over ranks).

    ``probs_fn(outputs) -> [B, C]`` gives the scores to rank; default: the logits.
    """
    device = preprocess.device
    counts = torch.zeros(2 + 2 * num_classes, dtype=torch.float64, device=device)
    for outputs, target in predict_outputs(model, loader, preprocess, amp):
        scores = probs_fn(outputs) if probs_fn is not None else logits_of(outputs)
        counts += accuracy_counts(scores, target.to(device), num_classes)
    return accuracy_from_counts(all_reduce_sum(counts, info).cpu(), num_classes)


def accuracy_counts(scores: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[2 + 2C]`` float64 sums of ``scores [N, C]`` against ``targets [N]``: top-1 hits, top-5
    hits, then per class its top-1 hits and its images; they add up over batches and ranks."""
    top = scores.topk(min(5, num_classes), dim=1).indices
    hit1 = top[:, 0] == targets
    per_class = torch.zeros(2, num_classes, dtype=torch.float64, device=scores.device)
    per_class[0].index_add_(0, targets, hit1.double())
    per_class[1].index_add_(0, targets, torch.ones_like(targets, dtype=torch.float64))
    hits = torch.stack([hit1.sum(), (top == targets[:, None]).any(dim=1).sum()]).double()
    return torch.cat([hits, per_class.flatten()])


def accuracy_from_counts(counts: torch.Tensor, num_classes: int) -> dict:
    """top-1, top-5, per-class accuracy (NaN for a class with no image) and count from
    :func:`accuracy_counts`."""
    images = counts[2 + num_classes :]
    total = float(images.sum())
    if total == 0:
        raise UserError("evaluation set is empty")
    return {
        "top1": float(counts[0]) / total,
        "top5": float(counts[1]) / total,
        "per_class": [float(c / n) if n > 0 else math.nan for c, n in zip(counts[2 : 2 + num_classes], images)],
        "count": int(total),
    }
