"""One training epoch and one evaluation pass, torchvision-reference style."""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from typing import Callable

import torch
import torch.nn as nn
from tqdm import tqdm

from scarce.engine.batch import BatchPreprocessor
from scarce.engine.distributed import DistInfo, all_reduce_sum
from scarce.errors import UserError

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the run stops and keeps its last good checkpoint."""


def autocast(device: torch.device, amp: str):
    dtype = AMP_DTYPES[amp]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def logits_of(outputs) -> torch.Tensor:
    """The classifier output psi ``[B, C]`` of a plain or head-g model."""
    return outputs["logits"] if isinstance(outputs, dict) else outputs


def train_one_epoch(model: nn.Module, loader, loss_fn: Callable, optimizer: torch.optim.Optimizer,
                    scheduler, preprocess: BatchPreprocessor, epoch: int, *, amp: str = "none",
                    scaler: torch.amp.GradScaler | None = None, clip_grad: float | None = None,
                    ema=None, global_step: int = 0, progress: bool = True) -> tuple[dict, int]:
    """Train for one epoch -> (``{"loss", "images", "seconds", "lr"}``, new global step)."""
    model.train()
    device = preprocess.device
    total_loss = torch.zeros((), dtype=torch.float64)
    images, start = 0, time.perf_counter()
    updates_per_epoch = len(loader)
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not progress, dynamic_ncols=True)
    for x, target in bar:
        x = preprocess(x, train=True)
        target = target.to(device, non_blocking=True)
        with autocast(device, amp):
            loss = loss_fn(model(x), target)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss is {loss.item()} at epoch {epoch}, step {global_step}")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if clip_grad is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        global_step += 1
        if ema is not None:
            ema.update(model, step=global_step)
        if scheduler is not None:
            scheduler.step_update(num_updates=global_step)
        total_loss += loss.detach().double().cpu() * x.shape[0]
        images += x.shape[0]
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    seconds = time.perf_counter() - start
    return {"loss": float(total_loss) / max(images, 1), "images": images, "seconds": seconds,
            "lr": optimizer.param_groups[0]["lr"], "updates": updates_per_epoch}, global_step


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
def evaluate(model: nn.Module, loader, preprocess: BatchPreprocessor, num_classes: int,
             info: DistInfo = DistInfo(), amp: str = "none", probs_fn: Callable | None = None) -> dict:
    """Exact top-1 / top-5 / per-class accuracy over the loader (summed over ranks).

    ``probs_fn(outputs) -> [B, C]`` gives the scores to rank; default: the logits.
    """
    device = preprocess.device
    correct1 = torch.zeros((), dtype=torch.float64, device=device)
    correct5 = torch.zeros((), dtype=torch.float64, device=device)
    per_class = torch.zeros(2, num_classes, dtype=torch.float64, device=device)  # [correct; count]
    for outputs, target in predict_outputs(model, loader, preprocess, amp):
        scores = probs_fn(outputs) if probs_fn is not None else logits_of(outputs)
        target = target.to(device)
        top = scores.topk(min(5, num_classes), dim=1).indices
        hit1 = top[:, 0] == target
        correct1 += hit1.sum()
        correct5 += (top == target[:, None]).any(dim=1).sum()
        per_class[1].index_add_(0, target, torch.ones_like(target, dtype=torch.float64))
        per_class[0].index_add_(0, target, hit1.double())
    stats = all_reduce_sum(torch.cat([correct1[None], correct5[None], per_class.flatten()]), info).cpu()
    counts = stats[2 + num_classes:]
    total = float(counts.sum())
    if total == 0:
        raise UserError("evaluation set is empty")
    per_class_acc = [float(c / n) if n > 0 else math.nan for c, n in zip(stats[2:2 + num_classes], counts)]
    return {"top1": float(stats[0]) / total, "top5": float(stats[1]) / total,
            "per_class": per_class_acc, "count": int(total)}
