"""Ensemble voting rules: plurality voting (Algorithm 1 of Kim et al. 2020) and soft voting.

Shapes: ``N`` samples, ``C`` classes, ``M`` ensemble members. Probabilities are
``[N, C]`` for one model and ``[M, N, C]`` for the members. Every function accepts
torch tensors or numpy arrays and returns torch tensors.

The work is done in numpy on the CPU: CPU tensors and float32/float64 arrays are used
without a copy (other dtypes and GPU tensors are copied to float32 on the CPU). numpy's
SIMD argmax over the last axis is ~3x faster than torch's, and the voting is bound by
reading the ``[M, N, C]`` probabilities once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray

#: Thresholds tried by ``choose_threshold`` by default: 0 (base model only) to 1 in
#: steps of 0.05, plus 1.01 (pure plurality: the base model's answer is never kept).
DEFAULT_CANDIDATES: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21)) + (1.01,)


class ThresholdRow(NamedTuple):
    """One row of ``choose_threshold``'s table."""

    threshold: float
    accuracy: float
    replaced: float  # fraction of answers that differ from the base model's


def _as_array(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` as a float32/float64 numpy array, sharing memory where possible."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()  # numpy has no bfloat16; float16 math is slow on CPUs
        x = x.cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
        arr = arr.astype(np.float32)
    return arr


def _check_members(member_probs: ArrayLike) -> np.ndarray:
    members = _as_array(member_probs, "member_probs")
    if members.ndim != 3 or 0 in members.shape:
        raise ValueError(f"member_probs must be [M, N, C] with M, N, C > 0, got {list(members.shape)}")
    return members


def _check_base(base_probs: ArrayLike, members: np.ndarray) -> np.ndarray:
    base = _as_array(base_probs, "base_probs")
    if base.shape != members.shape[1:]:
        raise ValueError(
            f"base_probs must be [N, C] = {list(members.shape[1:])} to match member_probs "
            f"[M, N, C] = {list(members.shape)}, got {list(base.shape)}"
        )
    return base


def _check_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if math.isnan(threshold) or threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    return threshold


def _plurality(members: np.ndarray, votes: np.ndarray) -> np.ndarray:
    """Plurality answer of each sample given every member's vote.

    members: ``[M, n, C]`` probabilities; votes: ``[M, n]`` argmax of each member.
    Returns int64 ``[n]``: the most voted class; ties go to the tied class with the
    highest mean probability over the members, then to the lowest class index.
    """
    m, n, c = members.shape
    cand = np.ascontiguousarray(votes.T)  # [n, M]: candidate j of row i is member j's vote
    # Vote counts = a bincount over the flattened [n, C] index, kept sparse (np.unique
    # on n*M entries) so there is neither an [M, n, C] one-hot nor an [n, C] table.
    flat = (np.arange(n)[:, None] * c + cand).ravel()
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    cand_counts = counts[inverse].reshape(n, m)
    is_top = cand_counts == cand_counts.max(axis=1, keepdims=True)
    answer = cand[np.arange(n), is_top.argmax(axis=1)]  # a most voted class
    # Ties: rows where a most-voted candidate differs from the first one.
    tied = np.flatnonzero((is_top & (cand != answer[:, None])).any(axis=1))
    if tied.size:
        # Mean probability of each candidate class over the members: [M, t, M] -> [t, M].
        # Only M classes per row can win, so gather those instead of an [n, C] mean.
        tc = cand[tied]
        score = members[:, tied[:, None], tc].mean(axis=0, dtype=np.float64)
        score[~is_top[tied]] = -np.inf
        best = score == score.max(axis=1, keepdims=True)
        # Exact ties in mean probability too: the lowest class, whatever the member order.
        answer[tied] = np.where(best, tc, c).min(axis=1)
    return answer


def plurality_vote(base_probs: ArrayLike, member_probs: ArrayLike, threshold: float = 0.7) -> torch.Tensor:
    """Plurality voting, Algorithm 1 of Kim et al. (2020).

    Args:
        base_probs: ``[N, C]`` probabilities of the base model.
        member_probs: ``[M, N, C]`` probabilities of the M members; the base model is
            one of them, as in the paper.
        threshold: where the base model's top probability is ``>= threshold`` its
            answer is kept; elsewhere the answer is the class most members predict
            (ties: the tied class with the highest mean probability over the M
            members, then the lowest class index). ``0`` keeps the base model's
            answers everywhere; any value ``> 1`` gives pure plurality voting.

    Returns:
        LongTensor ``[N]`` of class indices.
    """
    members = _check_members(member_probs)
    base = _check_base(base_probs, members)
    threshold = _check_threshold(threshold)
    answer = base.argmax(axis=1)
    undecided = np.flatnonzero(base[np.arange(len(base)), answer] < threshold)
    if undecided.size > members.shape[1] // 4:
        # Many rows to vote: one pass over all members beats copying the rows out.
        voted = _plurality(members, members.argmax(axis=2))
        answer[undecided] = voted[undecided]
    elif undecided.size:
        # Few rows to vote: copy just those rows ([M, n, C]) rather than read everything.
        subset = members[:, undecided]
        answer[undecided] = _plurality(subset, subset.argmax(axis=2))
    return torch.from_numpy(answer.astype(np.int64, copy=False))


def soft_vote(member_probs: ArrayLike, weights: Sequence[float] | ArrayLike | None = None) -> torch.Tensor:
    """Soft voting: the (weighted) mean of the members' probabilities.

    Args:
        member_probs: ``[M, N, C]`` probabilities.
        weights: ``M`` non-negative weights (normalised here to sum to 1); ``None``
            gives every member the same weight.

    Returns:
        float32 tensor ``[N, C]`` (float64 if the input is float64).
    """
    members = _check_members(member_probs)
    m, n, c = members.shape
    if weights is None:
        w = np.full(m, 1.0 / m)
    else:
        w = np.asarray(weights.detach().cpu() if isinstance(weights, torch.Tensor) else weights, dtype=np.float64)
        w = w.ravel()
        if w.size != m:
            raise ValueError(f"weights must have one value per member (M={m}), got {w.size}")
        if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be finite, non-negative and not all zero, got {w.tolist()}")
        w = w / w.sum()
    # One matrix-vector product (BLAS gemv) reads the [M, N*C] data once, no temporaries.
    out = w.astype(members.dtype) @ members.reshape(m, n * c)
    return torch.from_numpy(out.reshape(n, c))


def oracle_accuracy(member_probs: ArrayLike, targets: ArrayLike) -> float:
    """Share of samples that at least one member ``[M, N, C]`` answers right (targets ``[N]``):
    the ceiling of any voting rule over these members."""
    members = _check_members(member_probs)
    y = _as_array(targets, "targets")
    return float((members.argmax(axis=2) == y[None]).any(axis=0).mean())


def choose_threshold(
    base_probs: ArrayLike, member_probs: ArrayLike, targets: ArrayLike, candidates: Sequence[float] | None = None
) -> tuple[float, list[ThresholdRow]]:
    """Pick the plurality-vote threshold that is most accurate on labelled data.

    Args:
        base_probs: ``[N, C]``; member_probs: ``[M, N, C]``; targets: ``[N]`` class
            indices, all known (held-out validation predictions, not the test set).
        candidates: thresholds to try (default ``DEFAULT_CANDIDATES``: 0 to 1 by
            0.05, and 1.01 for pure plurality).

    Returns:
        ``(best_threshold, table)``; ``table`` has one ``ThresholdRow(threshold,
        accuracy, replaced)`` per candidate in increasing threshold order, where
        ``replaced`` is the fraction of answers that differ from the base model's.
        Best = highest accuracy; ties go to the threshold that replaces the fewest
        base answers (the lowest tied threshold): no change without evidence.
    """
    members = _check_members(member_probs)
    base = _check_base(base_probs, members)
    n, c = base.shape
    y = np.asarray(targets.detach().cpu() if isinstance(targets, torch.Tensor) else targets).ravel()
    if y.size != n or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"targets must be [N] = [{n}] integers, got {y.dtype} {list(y.shape)}")
    if (y < 0).any() or (y >= c).any():
        raise ValueError(f"targets must all be known class indices in [0, {c}), got {y.min()}..{y.max()}")
    cands = sorted({_check_threshold(t) for t in (DEFAULT_CANDIDATES if candidates is None else candidates)})
    if not cands:
        raise ValueError("candidates must not be empty")
    base_answer = base.argmax(axis=1)
    confidence = base[np.arange(n), base_answer]
    vote = plurality_vote(base, members, threshold=math.inf).numpy()  # pure plurality, computed once
    table, scores = [], []
    for t in cands:
        pred = np.where(confidence >= t, base_answer, vote)
        correct = int((pred == y).sum())
        changed = int((pred != base_answer).sum())
        table.append(ThresholdRow(t, correct / n, changed / n))
        scores.append((-correct, changed, t))  # integer counts: exact comparisons
    return min(scores)[2], table
