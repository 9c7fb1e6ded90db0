"""Inference: voting ensembles and predictions files.

``calibration`` is imported on its own (``scarce.inference.calibration``) to keep this
package's import light and its parts independent.
"""

from scarce.inference.ensemble import add_ensemble_arguments, ensemble_main, run_ensemble
from scarce.inference.predictions import (
    Predictions,
    align_predictions,
    load_predictions,
    save_predictions,
    write_predictions_csv,
)
from scarce.inference.voting import ThresholdRow, choose_threshold, plurality_vote, soft_vote

__all__ = [
    "Predictions",
    "ThresholdRow",
    "add_ensemble_arguments",
    "align_predictions",
    "choose_threshold",
    "ensemble_main",
    "load_predictions",
    "plurality_vote",
    "run_ensemble",
    "save_predictions",
    "soft_vote",
    "write_predictions_csv",
]
