"""Calibrated confidence: a temperature fitted on the val split after training.

Voting thresholds compare a confidence to a number (0.7 in the paper); that only
means something when confidence is calibrated, so every run with a val split
saves ``calibration.json`` and every later prediction uses it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from scarce.calibration import expected_calibration_error, fit_temperature, nll
from scarce.engine.batch import BatchPreprocessor
from scarce.engine.loop import accuracy_counts, accuracy_from_counts, predict_outputs
from scarce.errors import UserError
from scarce.io import atomic_write_json, read_json
from scarce.models.heads import prediction_scores

CALIBRATION_FILE = "calibration.json"
TEMPERATURE_BOUNDS = (0.01, 100.0)


@torch.no_grad()
def collect_scores(
    model: torch.nn.Module, loader, preprocess: BatchPreprocessor, source: str, amp: str = "none"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-softmax scores ``[N, C]`` of ``source`` and targets ``[N]``, in loader order."""
    scores, targets = [], []
    for outputs, target in predict_outputs(model, loader, preprocess, amp):
        scores.append(prediction_scores(outputs, source=source).float().cpu())
        targets.append(target)
    return torch.cat(scores), torch.cat(targets)


def bound_note(fitted: float) -> str:
    """Why the fit ran to a bound: sharpening without end (every val image right with a margin),
    or flattening without end (the scores carry no information about the val labels yet)."""
    why = (
        "every val image right with a margin: sharpening never stops helping"
        if fitted < 1
        else "val prefers uniform probabilities: the scores do not tell its classes apart yet"
    )
    return f"the fit ran to its bound (T={fitted:g}: {why}); kept T=1, confidences are the model's own"


def fitted_temperature(val_scores: torch.Tensor, val_targets: torch.Tensor) -> tuple[float, float]:
    """``(temperature kept, temperature fitted)`` on val scores ``[N, C]`` and targets ``[N]``."""
    fitted = fit_temperature(val_scores, val_targets, TEMPERATURE_BOUNDS)
    # At a bound the fit did not find an optimum: T -> 0 when every val image is right with a
    # margin (the NLL falls as confidences approach 1), which would print 1.000 for everything.
    at_bound = not TEMPERATURE_BOUNDS[0] * 1.001 < fitted < TEMPERATURE_BOUNDS[1] * 0.999
    return (1.0 if at_bound else fitted), fitted


def calibrate(
    scores: dict[str, tuple[torch.Tensor, torch.Tensor]],
    source: str,
    run_dir: Path,
    others: dict[str, float] | None = None,
) -> dict:
    """Fit T of best.safetensors on ``scores["val"]`` (``(scores [N, C], targets [N])``); write
    calibration.json with NLL on val and ECE (15 bins) before and after on every split given, and
    the temperature of each weights file (``others``: those of the run's other weights files)."""
    val_scores, val_targets = scores["val"]
    temperature, fitted = fitted_temperature(val_scores, val_targets)
    at_bound = temperature != fitted
    result = {
        "source": source,
        "temperature": temperature,
        "temperature_fitted": fitted,
        "note": bound_note(fitted) if at_bound else None,
        "n_val": int(len(val_targets)),
        "nll_val_before": nll(val_scores, val_targets),
        "nll_val_after": nll(val_scores, val_targets, temperature),
    }
    for name, (split_scores, targets) in scores.items():
        result[f"ece_{name}_before"] = expected_calibration_error(split_scores.softmax(1), targets)
        result[f"ece_{name}_after"] = expected_calibration_error((split_scores / temperature).softmax(1), targets)
    result["temperatures"] = {"best.safetensors": temperature, **(others or {})}
    atomic_write_json(run_dir / CALIBRATION_FILE, result)
    return result


def accuracy_metrics(scores: torch.Tensor, targets: torch.Tensor, num_classes: int) -> dict:
    """top-1, top-5 and per-class accuracy of ``scores [N, C]`` (any monotone transform of the
    probabilities ranks the same) against ``targets [N]``, as ``engine.loop.evaluate`` counts them,
    with balanced accuracy, macro-F1 and per-class precision / recall / F1 / support."""
    top1 = scores.topk(min(5, num_classes), dim=1).indices[:, 0]  # ties broken as accuracy_counts breaks them
    return {
        **accuracy_from_counts(accuracy_counts(scores, targets, num_classes), num_classes),
        **class_metrics(top1, targets, num_classes),
    }


def class_metrics(pred: torch.Tensor, targets: torch.Tensor, num_classes: int) -> dict:
    """Balanced accuracy, macro-F1 and per-class precision / recall / F1 / support from
    predicted labels ``[N]``; classes absent from ``targets`` are left out of the means."""
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    confusion.index_put_((targets.long(), pred.long()), torch.ones_like(targets, dtype=torch.long), accumulate=True)
    tp = confusion.diag().double()
    support, predicted = confusion.sum(1).double(), confusion.sum(0).double()
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.nan)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), torch.zeros_like(tp))
    present = support > 0
    return {
        "balanced_accuracy": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.long().tolist(),
    }


def read_temperature(run_dir: Path, weights: str = "best.safetensors") -> float:
    """The fitted temperature of a run's ``weights`` file, 1.0 when it has none (no val split); a
    damaged calibration.json is one line naming it (every evaluate, predict and report reads it).
    A run from before per-weights temperatures (session 29) has best's alone, used for every file."""
    import math

    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return 1.0
    saved = read_json(path, {"temperature": (int, float)})
    per_weights = saved.get("temperatures") if isinstance(saved.get("temperatures"), dict) else {}
    key = f"temperatures.{weights}" if weights in per_weights else "temperature"
    value = per_weights[weights] if weights in per_weights else saved["temperature"]
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    temperature = float(value) if numeric else math.nan
    if not (math.isfinite(temperature) and temperature > 0):  # probabilities would be NaN or flipped
        shown = temperature if numeric else repr(value)
        raise UserError(f"{path}: key '{key}' should be a positive number, got {shown} (a damaged file?)")
    return temperature
