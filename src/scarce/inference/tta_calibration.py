"""A temperature for each number of TTA views, fitted on the run's val split.

The run's temperature (calibration.json) is fitted on single views, and a soft vote over views
that disagree is less confident than any one of them: on Fashion-MNIST val, 8 views (6 through
RandAugment) gave confidence 0.81 for accuracy 0.87 at the single-view temperature. A vote over
V views therefore gets its own T, fitted on val predicted with the same V views (the NLL of the
vote, :func:`scarce.calibration.fit_temperature` on ``[N, V, C]``), and kept in calibration.json
under ``tta_temperatures`` -> weights file -> V, so the val pass runs once per run and V.
"""

from __future__ import annotations

import math
import sys

import torch
from torch.utils.data import Subset

from scarce.data.datasets import ImageDataset
from scarce.engine.calibrate import CALIBRATION_FILE, fitted_temperature
from scarce.engine.evaluation import LoadedRun, eval_dataset, run_data_config, with_run_view
from scarce.errors import UserError
from scarce.io import atomic_write_json, read_json

TTA_TEMPERATURES = "tta_temperatures"
FIT_SEED = 0  # the views' seed on val: T belongs to the number of views, not to one draw of them
FIT_IMAGES = 2000  # at most, spread over val: one T is well fitted on far fewer, and a big val costs views x N


def tta_temperature(run: LoadedRun, views: int, batch_size: int = 64, num_workers: int = 0) -> tuple[float, int]:
    """``(temperature, views it was fitted on)`` for a soft vote over ``views`` views of ``run``:
    the saved or newly fitted T of that many views; the single-view T (``views`` 1) when the run
    has no val split or its val images cannot be read here."""
    path = run.run_dir / CALIBRATION_FILE
    if views == 1 or not path.is_file():
        return run.temperature, 1
    saved = read_json(path)
    by_weights = saved.get(TTA_TEMPERATURES) if isinstance(saved.get(TTA_TEMPERATURES), dict) else {}
    per_weights = by_weights.get(run.weights.name) if isinstance(by_weights.get(run.weights.name), dict) else {}
    cached = per_weights.get(str(views))
    if isinstance(cached, (int, float)) and not isinstance(cached, bool) and math.isfinite(cached) and cached > 0:
        return float(cached), views
    fitted = _fit_on_val(run, views, batch_size, num_workers)
    if fitted is None:
        return run.temperature, 1
    saved[TTA_TEMPERATURES] = {**by_weights, run.weights.name: {**per_weights, str(views): fitted}}
    try:
        atomic_write_json(path, saved)
    except OSError:
        pass  # a read-only run: the fit is used now and made again next time
    return fitted, views


def view_scores(
    run: LoadedRun,
    dataset: ImageDataset,
    views: int,
    batch_size: int = 64,
    num_workers: int = 0,
    seed: int = FIT_SEED,
    max_images: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``[N, views, C]`` of ``dataset`` (a split of the run's own data, :func:`eval_dataset`;
    its transform is replaced by the views) in the run's prediction source, before any temperature,
    one row per TTA view, and targets ``[N]``; ``max_images``: at most that many, evenly spaced."""
    from scarce.data.loader import build_eval_loader
    from scarce.engine.factories import prediction_source
    from scarce.inference.tta import TTATransform, tta_predict
    from scarce.models.heads import prediction_scores

    own_view = with_run_view(run, run_data_config(run, None))
    dataset.transform = TTATransform(own_view, run.cfg.augment, run.augment_fill, views, seed)
    source = prediction_source(run.cfg)
    chosen = dataset
    if max_images is not None and len(dataset) > max_images:
        chosen = Subset(dataset, torch.linspace(0, len(dataset) - 1, max_images).round().long().tolist())
    return tta_predict(
        run.model,
        build_eval_loader(chosen, batch_size, num_workers),
        run.preprocessor(),
        lambda outputs: prediction_scores(outputs, source=source),
        chunk_size=batch_size,
        amp=run.amp,
        per_view=True,
    )


def _fit_on_val(run: LoadedRun, views: int, batch_size: int, num_workers: int) -> float | None:
    """T of the soft vote over ``views`` views of the run's own val split (1 when the fit runs to a
    bound, as for one view); None without a readable val split."""
    try:
        dataset = eval_dataset(run, run_data_config(run, None), "val")
    except UserError:  # e.g. the data are not on this machine: the single-view T stands
        return None
    if len(dataset) == 0:
        return None
    n = min(len(dataset), FIT_IMAGES)
    print(
        f"fitting the temperature of {views}-view votes on {n} val images (once: kept in {CALIBRATION_FILE})",
        file=sys.stderr,
    )
    scores, targets = view_scores(run, dataset, views, batch_size, num_workers, max_images=FIT_IMAGES)
    return fitted_temperature(scores, targets)[0]  # at a bound 1, as for one view: the model's own
