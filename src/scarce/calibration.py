"""Calibration: expected calibration error, reliability bins, temperature scaling.

Confidence = the max class probability. A voting threshold (e.g. 0.7) only means
something if confidence is calibrated, so fit a temperature on held-out scores
(``scarce.models.heads.prediction_scores``) and check ECE before choosing it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["expected_calibration_error", "reliability_bins", "fit_temperature", "nll", "soft_vote_nll"]


def _check(probs_or_logits: torch.Tensor, targets: torch.Tensor, what: str) -> None:
    if probs_or_logits.ndim != 2:
        raise ValueError(f"{what} must be [N, C], got shape {tuple(probs_or_logits.shape)}")
    if targets.ndim != 1 or targets.shape[0] != probs_or_logits.shape[0]:
        raise ValueError(f"targets must be [N] with N={probs_or_logits.shape[0]}, got {tuple(targets.shape)}")
    if probs_or_logits.shape[0] == 0:
        raise ValueError(f"{what} is empty")


def reliability_bins(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = 15) -> dict[str, object]:
    """Per-bin statistics of max-prob confidence, equal-width bins on [0, 1].

    probs: [N, C] probabilities; targets: Long [N]. Bin i holds confidences in
    (i/n, (i+1)/n] (bin 0 also holds 0). Returns python values (JSON-ready):
    ``edges`` [n+1], ``counts`` [n] int, ``accuracy`` [n] and ``confidence`` [n]
    (means per bin, 0.0 for empty bins: check ``counts``), ``ece`` float, ``n`` int.
    """
    _check(probs, targets, "probs")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    # float64 on CPU: sums over many samples stay exact enough and results are deterministic.
    p = probs.detach().to("cpu", torch.float64)
    conf, pred = p.max(dim=1)
    correct = (pred == targets.detach().to("cpu").long()).to(torch.float64)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    # right=False: index i with edges[i] < conf <= edges[i+1]; clamp puts conf<=0 in bin 0
    # and any conf>1 from rounding in the last bin.
    idx = torch.bucketize(conf, edges[1:-1], right=False).clamp_(0, n_bins - 1)
    counts = torch.bincount(idx, minlength=n_bins).to(torch.float64)
    acc_sum = torch.bincount(idx, weights=correct, minlength=n_bins)
    conf_sum = torch.bincount(idx, weights=conf, minlength=n_bins)
    safe = counts.clamp(min=1.0)
    acc = torch.where(counts > 0, acc_sum / safe, torch.zeros_like(safe))
    mean_conf = torch.where(counts > 0, conf_sum / safe, torch.zeros_like(safe))
    n = float(conf.numel())
    ece = float(((counts / n) * (acc - mean_conf).abs()).sum())
    return {
        "edges": edges.tolist(),
        "counts": [int(c) for c in counts.tolist()],
        "accuracy": acc.tolist(),
        "confidence": mean_conf.tolist(),
        "ece": ece,
        "n": int(n),
    }


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = 15) -> float:
    """ECE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)| over equal-width max-prob bins.

    probs: [N, C] probabilities; targets: Long [N]. Returns a python float in [0, 1].
    """
    return float(reliability_bins(probs, targets, n_bins=n_bins)["ece"])


def nll(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of softmax(logits / temperature); logits [N, C], targets [N]."""
    _check(logits, targets, "logits")
    z = logits.detach().to("cpu", torch.float64)
    return float(F.cross_entropy(z / temperature, targets.detach().to("cpu").long()))


def soft_vote_nll(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the soft vote ``mean_v softmax(logits[:, v] / T)`` over
    views; logits ``[N, V, C]``, targets ``[N]`` (V = 1: :func:`nll`)."""
    _check(logits[:, 0], targets, "logits")
    z = logits.detach().to("cpu", torch.float64)
    log_vote = torch.logsumexp(F.log_softmax(z / temperature, dim=2), dim=1) - math.log(z.shape[1])
    return float(F.nll_loss(log_vote, targets.detach().to("cpu").long()))


def fit_temperature(
    logits: torch.Tensor,
    targets: torch.Tensor,
    bounds: tuple[float, float] = (0.01, 100.0),
    tol: float = 1e-6,
    max_iter: int = 200,
) -> float:
    """Scalar T > 0 minimising the NLL of softmax(logits / T) on (logits, targets).

    logits: [N, C] pre-softmax scores (e.g. ``prediction_scores``), or [N, V, C] for V TTA
    views, whose prediction is the soft vote ``mean_v softmax(logits[:, v] / T)``; targets:
    Long [N]. Golden-section search on log T within ``bounds``: the NLL is convex in 1/T
    for one view, hence unimodal in log T, so a bounded 1-D search finds the optimum
    deterministically and needs no gradient (a vote over views is not proven convex; the
    search returns the best of its interior point and both bounds); if the data want T -> 0
    or T -> inf (e.g. all predictions right) it stops at the bound instead of diverging.
    Returns a python float.
    """
    views = logits if logits.ndim == 3 else logits.unsqueeze(1)
    _check(views[:, 0], targets, "logits")
    lo_t, hi_t = bounds
    if not 0 < lo_t < hi_t:
        raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds}")
    z = views.detach().to("cpu", torch.float64)
    y = targets.detach().to("cpu").long()
    if not torch.isfinite(z).all():
        raise ValueError("logits contain non-finite values")
    if bool((z == z[..., :1]).all()):
        return 1.0  # every row constant: the NLL does not depend on T

    def f(log_t: float) -> float:
        return soft_vote_nll(z, y, math.exp(log_t))

    a, b = math.log(lo_t), math.log(hi_t)
    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...
    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(max_iter):
        if b - a < tol:
            break
        if fc <= fd:  # minimum in [a, d]
            b, d, fd = d, c, fc
            c = b - inv_phi * (b - a)
            fc = f(c)
        else:  # minimum in [c, b]
            a, c, fc = c, d, fd
            d = a + inv_phi * (b - a)
            fd = f(d)
    # Compare with the end points so a monotone NLL returns the bound itself.
    # The interior point is listed first so that it wins ties.
    points = [(a + b) / 2, math.log(lo_t), math.log(hi_t)]
    candidates: list[tuple[float, float]] = [(f(p), p) for p in points]
    best = min(candidates, key=lambda t: t[0])[1]
    return float(math.exp(best))
