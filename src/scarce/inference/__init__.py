"""Inference: voting ensembles and predictions files.

Temperature scaling and ECE live below the engine (``scarce.calibration``), which uses
them. ``predict_run``, ``tta_predict``, ``tta_views`` and ``TTATransform`` load torch
models and the engine, so they are imported on first use.
"""

from scarce.inference.ensemble import run_ensemble
from scarce.inference.ensemble_members import align_predictions
from scarce.inference.predictions import Predictions, load_predictions, save_predictions, write_predictions_csv
from scarce.inference.voting import ThresholdRow, choose_threshold, plurality_vote, soft_vote

_LAZY = {
    "predict_run": "scarce.inference.predict",
    "write_predictions": "scarce.inference.predict",
    "tta_predict": "scarce.inference.tta",
    "tta_views": "scarce.inference.tta",
    "TTATransform": "scarce.inference.tta",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scarce.inference' has no attribute {name!r}")


__all__ = [
    "Predictions",
    "TTATransform",
    "ThresholdRow",
    "align_predictions",
    "choose_threshold",
    "load_predictions",
    "plurality_vote",
    "predict_run",
    "run_ensemble",
    "save_predictions",
    "soft_vote",
    "tta_predict",
    "tta_views",
    "write_predictions",
    "write_predictions_csv",
]
