"""Class weights for imbalanced data: any loss, each sample weighted by its class."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from scarce.losses.cosine import Outputs


def balanced_class_weights(counts: Sequence[int]) -> torch.Tensor:
    """Float ``[C]``: ``n / (C * count_c)``, so every class carries the same total weight.

    The "balanced" heuristic of scikit-learn (King & Zeng). A class absent from the
    training data gets weight 0 (it has no samples to weight).
    """
    counts_t = torch.as_tensor(list(counts), dtype=torch.float64)
    if counts_t.ndim != 1 or len(counts_t) == 0 or bool((counts_t < 0).any()):
        raise ValueError(f"counts must be a non-empty list of non-negative ints, got {list(counts)}")
    present = counts_t > 0
    weights = torch.zeros_like(counts_t)
    weights[present] = counts_t.sum() / (int(present.sum()) * counts_t[present])
    return weights.float()


def class_weighted_mean(
    per_sample: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, total_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """``sum_i w[y_i] * l_i / sum_i w[y_i]``: per-sample losses ``[B]`` -> scalar.

    The same normalisation as ``F.cross_entropy(weight=...)`` with reduction 'mean', so with
    cross-entropy this equals torch's weighted loss exactly. ``total_weight`` replaces the
    batch's own ``sum_i w[y_i]`` (a data-parallel step divides by the whole global batch's).
    """
    w = weights.to(per_sample.device, per_sample.dtype)[target.long()]
    total = w.sum() if total_weight is None else total_weight.to(per_sample.dtype)
    return (w * per_sample).sum() / total.clamp_min(torch.finfo(per_sample.dtype).tiny)


class ClassWeighted(nn.Module):
    """Wraps a loss built with ``reduction='none'``; keeps its ``aux_head`` / ``normalized_embedding``.

    With ``world_size > 1`` (one module per DDP rank) each rank divides by the global batch's
    total weight (one all-reduce of a scalar) and multiplies by the world size: DDP's gradient
    average is then the gradient of the global batch's weighted mean, not a mean of per-rank
    weighted means (which would weight a rank's samples by how few weight its batch drew).
    """

    def __init__(self, loss: nn.Module, weights: torch.Tensor, world_size: int = 1) -> None:
        super().__init__()
        if getattr(loss, "reduction", None) != "none":
            raise ValueError("ClassWeighted needs a loss built with reduction='none'")
        self.loss = loss
        self.world_size = world_size
        self.aux_head = loss.aux_head
        self.normalized_embedding = loss.normalized_embedding
        self.register_buffer("weights", weights.float())

    def forward(self, outputs: Outputs, target: torch.Tensor) -> torch.Tensor:
        per_sample = self.loss(outputs, target)
        if self.world_size == 1:
            return class_weighted_mean(per_sample, target, self.weights)
        import torch.distributed as dist

        total = self.weights.to(per_sample.device, per_sample.dtype)[target.long()].sum().detach()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return self.world_size * class_weighted_mean(per_sample, target, self.weights, total)
