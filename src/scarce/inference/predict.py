"""``scarce predict``: a trained run's calibrated class probabilities on a set of images.

What is predicted (``split``):

- ``train``/``val``/``test`` of ``data`` (a built-in dataset or an image-folder root;
  default: the run's own data config);
- a folder path: ``<folder>/<class>/<image>`` (labelled; every class folder must be one
  the run knows, a subset is fine) or a *flat* folder of images with no class folders
  (unlabelled: targets are -1). A data root with no such split but a flat folder of
  images is read the same way (``--data my_images/``).

Ids are image paths relative to the data root (``test/cat/1.png``), relative to the
folder for a folder given as ``--split``, and dataset ids (``test/123``) for
fashion-mnist. Probabilities come from the run's declared prediction source, divided by
its fitted temperature (``calibration.json``), averaged over ``tta_views`` deterministic
views (:mod:`scarce.inference.tta`; 1 = the clean evaluation view only); a vote over more
than one view uses the temperature fitted on val with as many views
(:mod:`scarce.inference.tta_calibration`).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from scarce.config import DataConfig, data_label
from scarce.data.datasets import ImageDataset
from scarce.data.loader import build_eval_loader, decoded_cache_sides
from scarce.data.splits import SPLIT_NAMES, locate_split
from scarce.engine.evaluation import (
    LoadedRun,
    check_loader_options,
    eval_dataset,
    load_run,
    run_data_config,
    with_run_view,
)
from scarce.engine.factories import prediction_source, probs_function
from scarce.engine.hardware import device_name
from scarce.errors import UserError, counted
from scarce.inference.predictions import Predictions, prediction_arrays, write_npz, write_predictions_csv
from scarce.inference.tta import TTATransform, first_randaugment_view, tta_predict
from scarce.inference.tta_calibration import tta_temperature
from scarce.io import atomic_paths

UNREADABLE_HINT = "; fix or remove it, or leave such images out: scarce predict --skip-bad-images"


def unreadable_image_message(image: str | os.PathLike, reason: str, more: int = 0, hint: str = UNREADABLE_HINT) -> str:
    """One line for an image file that cannot be read: the file, why (``check_image``'s reason: an
    empty file, a truncated one), how many ``more`` files failed too, and ``hint``: what to do."""
    others = f" (and {more} more)" if more else ""
    return f"image {image}: {reason}{others}{hint}"


def prediction_dataset(run: LoadedRun, data: DataConfig, split: str) -> tuple[ImageDataset, list[str]]:
    """The images to predict (no transform set yet) and their ids (see module docstring)."""
    dataset = eval_dataset(run, data, split, labels_required=False)  # a flat folder of images is predicted too
    data_root = locate_split(data, split).root
    ids = list(dataset.ids)
    if data_root is not None and dataset.split.root is not None:
        prefix = Path(os.path.relpath(Path(dataset.split.root).resolve(), data_root.resolve()))
        if prefix != Path(".") and not str(prefix).startswith(".."):
            ids = [(prefix / i).as_posix() for i in ids]
    return dataset, ids


def drop_bad_images(
    dataset: ImageDataset, ids: list[str], data: DataConfig
) -> tuple[ImageDataset, list[str], list[dict]]:
    """The images of ``dataset`` that decode, their ids, and ``[{"path", "reason"}]`` of those
    that do not, ``path`` being the id the image would have had (the up-front scan of
    training; in-memory datasets have nothing to scan). The scan keeps the decoded images at
    the evaluation size (``data`` as the run sees it) when they fit in memory, as training's
    does, so each file is decoded once."""
    from scarce.data.check import check_split

    split = dataset.split
    if split.array is not None:
        return dataset, ids, []
    keep_side = (decoded_cache_sides(data, {"predict": split}) or {}).get("predict")
    checks = check_split(split, dataset.mode, keep_side=keep_side)
    keep = [i for i, check in enumerate(checks) if check.ok]
    kept = replace(
        split,
        ids=[split.ids[i] for i in keep],
        targets=[split.targets[i] for i in keep],
        cache=[checks[i].pixels for i in keep] if keep_side is not None else None,
    )
    bad = [{"path": ids[i], "reason": check.reason} for i, check in enumerate(checks) if not check.ok]
    return ImageDataset(kept, dataset.mode), [ids[i] for i in keep], bad


def predict_run(
    path: str | os.PathLike,
    data: DataConfig | None = None,
    split: str = "test",
    tta_views: int = 1,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int = 2,
    seed: int = 0,
    skip_bad_images: bool = False,
    views_temperature: bool = True,
) -> Predictions:
    """Predict ``split`` with the run (or weights file) at ``path``.

    Returns :class:`Predictions`: ``probs`` float32 ``[N, C]`` (calibrated, soft-voted over
    ``tta_views`` views), ``ids`` ``[N]``, ``classes`` ``[C]``, ``targets`` ``[N]`` (-1 where
    unknown) and ``metadata`` (run dir, weights, model, source, temperature, TTA, split, data).
    ``batch_size`` images are loaded at a time and ``batch_size`` views go through the model
    at a time; ``seed`` draws the augmented views. ``skip_bad_images``: unreadable images are
    left out and listed in ``metadata["skipped_images"]`` (else the first one is an error).
    ``views_temperature``: a vote over views uses the temperature fitted on val with as many
    views (False: the single-view one, as predictions made before it existed).
    """
    if tta_views < 1:
        raise UserError(f"--tta: expected a number of views >= 1, got {tta_views}")
    check_loader_options(batch_size, num_workers)
    dev = torch.device(device_name(device))
    run = load_run(path, dev)
    data = run_data_config(run, data)
    dataset, ids = prediction_dataset(run, data, split)
    skipped: list[dict] = []
    if skip_bad_images:
        dataset, ids, skipped = drop_bad_images(dataset, ids, with_run_view(run, data))
    else:
        dataset.unreadable_hint = UNREADABLE_HINT
    if len(dataset) == 0:
        raise UserError(f"split '{split}' of data '{data_label(data)}': no images")
    dataset.transform = TTATransform(with_run_view(run, data), run.cfg.augment, run.augment_fill, tta_views, seed)
    loader = build_eval_loader(dataset, batch_size, num_workers)
    temperature, temperature_views = tta_temperature(
        run, tta_views if views_temperature else 1, batch_size, num_workers
    )
    probs, _ = tta_predict(
        run.model, loader, run.preprocessor(), probs_function(run.cfg, temperature), chunk_size=batch_size, amp=run.amp
    )
    metadata = {
        "run_dir": str(run.run_dir),
        "weights": str(run.weights),
        "model": run.cfg.model.name,
        "source": prediction_source(run.cfg),
        "temperature": temperature,
        "temperature_views": temperature_views,  # < tta_views: no val split to fit that many on
        "tta_views": tta_views,
        "tta_seed": seed,
        "tta_randaugment": run.cfg.augment.randaugment if tta_views > first_randaugment_view(run.cfg.augment) else None,
        "split": split if split in SPLIT_NAMES else os.path.abspath(split),  # a folder: as one spelling
        "data": data_label(data),
        "skipped_images": skipped,
    }
    return Predictions(
        probs.numpy().astype(np.float32),
        np.array(ids, dtype=str),
        np.array(run.classes, dtype=str),
        np.asarray(dataset.targets, dtype=np.int64),
        metadata,
    )


def write_predictions(preds: Predictions, out: str | os.PathLike, csv_path: str | os.PathLike | None = None) -> None:
    """Save ``preds`` as a predictions file (``.npz``) and optionally as a CSV, replaced together
    (:func:`scarce.io.atomic_paths`): a failed write never leaves a new npz beside a stale CSV."""
    arrays = prediction_arrays(preds.probs, preds.ids, preds.classes, preds.targets, preds.metadata)
    with atomic_paths([out] + ([csv_path] if csv_path is not None else [])) as tmps:
        write_npz(tmps[0], arrays)
        if csv_path is not None:
            write_predictions_csv(tmps[1], preds, atomic=False)


def summarize(preds: Predictions) -> str:
    """One line: count, mean confidence and, with labels, top-1 accuracy."""
    conf = preds.probs.max(axis=1)
    line = f"{counted(len(preds.ids), 'image')}, {len(preds.classes)} classes, mean confidence {conf.mean():.4f}"
    mask = preds.labelled
    if mask.any():
        acc = float((preds.probs[mask].argmax(axis=1) == preds.targets[mask]).mean())
        line += f", top-1 {acc:.4f} on {int(mask.sum())} labelled"
    return line
