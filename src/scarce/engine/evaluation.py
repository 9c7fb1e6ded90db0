"""Load a finished run and score its weights on a split (``scarce evaluate``)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from scarce.config import Config, DataConfig, data_label, saved_config
from scarce.data.datasets import ImageDataset, Split, full_scale_of
from scarce.data.loader import EVAL_BATCH_FACTOR, DataBundle, build_data, build_eval_loader
from scarce.data.splits import folder_of_run_classes, locate_split, missing_split_error
from scarce.data.transforms import EvalTransform
from scarce.engine.batch import BatchPreprocessor
from scarce.engine.calibrate import accuracy_metrics, calibrate, collect_scores, fitted_temperature, read_temperature
from scarce.engine.checkpoint import load_weights
from scarce.engine.eval_files import eval_file_name, free_eval_path, scored_source
from scarce.engine.factories import prediction_source
from scarce.engine.hardware import device_name, scoring_speed
from scarce.engine.resume import check_val_as_drawn, recorded_unreadable
from scarce.engine.run_dir import resolve_weights
from scarce.errors import UserError
from scarce.io import atomic_write_json, read_json, tensors_metadata
from scarce.losses import loss_requires_head_g
from scarce.models.factory import create_model


@dataclass
class LoadedRun:
    run_dir: Path
    weights: Path
    cfg: Config
    classes: list[str]
    mode: str
    mean: list[float]
    std: list[float]
    model: torch.nn.Module
    temperature: float = 1.0
    fill: list[int] | None = None  # augment.fill as trained (None: a run from before it was saved)

    @property
    def augment_fill(self) -> list[int]:
        """The colour RandAugment painted uncovered pixels with in training (TTA views repeat it);
        runs from before ``augment.fill`` existed used the normalisation mean."""
        from scarce.data.image_stats import mean_fill

        return self.fill if self.fill is not None else mean_fill(self.mean)

    @property
    def device(self) -> torch.device:
        """Where the model's weights are (``load_run`` resolved ``auto``)."""
        return next(self.model.parameters()).device

    @functools.cached_property
    def speed(self) -> tuple[str, bool]:
        """``(amp, channels_last)`` to score with on :attr:`device`: as the run trained, where this
        CPU can (environment.json is read once)."""
        return scoring_speed(self.cfg.amp, self.cfg.channels_last, self.run_dir, self.device)

    @property
    def amp(self) -> str:
        return self.speed[0]

    @property
    def channels_last(self) -> bool:
        return self.speed[1]

    def preprocessor(self) -> BatchPreprocessor:
        """Normalisation and memory format of the batches to score with (:func:`load_run` put the
        model in the same format): evaluate, predict, report and the API score alike."""
        return BatchPreprocessor(self.mean, self.std, self.device, channels_last=self.channels_last)


def load_run(path: str | Path, device: torch.device | str = "auto") -> LoadedRun:
    """A run directory (its best weights) or a weights file in one, on ``device`` (``auto`` resolved)."""
    device = torch.device(device_name(str(device)))
    run_dir, weights = resolve_weights(path)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"{run_dir}: no config.yaml beside {weights.name}")
    cfg = saved_config(config_path)
    info = read_json(run_dir / "classes.json", CLASSES_SCHEMA)
    model = create_model(
        cfg.model, len(info["classes"]), info["in_chans"], cfg.data.img_size, head_g=loss_requires_head_g(cfg.loss.name)
    )
    load_weights(model, weights)
    run = LoadedRun(
        run_dir,
        weights,
        cfg,
        info["classes"],
        info["mode"],
        info["mean"],
        info["std"],
        model.to(device).eval(),
        read_temperature(run_dir, weights.name),
        info.get("fill"),
    )
    if run.channels_last:  # the memory format it trained in, as its batches (preprocessor) get
        run.model.to(memory_format=torch.channels_last)
    return run


def with_run_view(run: LoadedRun, data: DataConfig) -> DataConfig:
    """``data`` seen as the run saw images at evaluation (size, crop, small images), whatever
    data it names: every scoring of a run goes through this one copy of those keys."""
    own = run.cfg.data
    return replace(
        data, img_size=own.img_size, crop_pct=own.crop_pct, small_images=own.small_images, bit_depth=own.bit_depth
    )


def run_data_config(run: LoadedRun, data: DataConfig | None) -> DataConfig:
    """The data config to score ``run`` on: ``data``, or the run's own when ``data`` is None or a
    bare ``DataConfig(name=...)`` naming the run's dataset (as a built-in name or as any spelling
    of the same folder), so the run's sampling (``per_class``, ``split_seed``, ``val_fraction``,
    split folders) is kept and its val split is the one it was trained beside, not a new draw
    that could hold training images."""
    own = run.cfg.data
    if data is None:
        return own
    if data != DataConfig(name=data.name) or not _same_dataset(data.name, own.name):
        return data
    return own


def _same_dataset(a: str | None, b: str | None) -> bool:
    if a == b:
        return True
    if a is None or b is None:
        return False
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _names(classes: list[str], shown: int = 5) -> str:
    if not classes:
        return "none"
    return ", ".join(map(repr, classes[:shown])) + (f", ... ({len(classes)} in all)" if len(classes) > shown else "")


def in_run_class_order(split: Split, classes: list[str], name: str) -> Split:
    """``split`` with targets indexing the run's ``classes``, matched by name: the same names in
    another order (a built-in dataset's label order vs a folder's sorted names), or some of them
    (a class without images is scored as such, as with ``--split FOLDER``)."""
    if split.classes == classes:
        return split
    unknown = [c for c in split.classes if c not in classes]
    if unknown:
        raise UserError(
            f"data '{name}': classes the run was not trained on: {_names(unknown)} (the run's: {_names(classes)}); "
            "a model can only be scored on its own classes"
        )
    index = [classes.index(c) for c in split.classes]
    return replace(split, targets=[index[t] for t in split.targets], classes=list(classes))


def _same_folders(a: DataConfig, b: DataConfig) -> bool:
    """Whether ``a`` and ``b`` name the same data (its name and train folder, paths resolved)."""

    def where(value: str | None) -> str | None:
        return None if value is None else str(Path(value).resolve()) if Path(value).exists() else value

    return (where(a.name), where(a.train)) == (where(b.name), where(b.train))


def eval_dataset(run: LoadedRun, data: DataConfig, split: str, labels_required: bool = True) -> ImageDataset:
    """``split`` of ``data`` (built-in or folder), checked against the run's classes. Without
    ``labels_required`` (predict), a folder may also be a flat one of unlabelled images."""
    data = with_run_view(run, data)
    source = locate_split(data, split)
    if source.folder is None:
        # the run's saved mean/std normalise its input: the train images' statistics are not measured again
        channels = {"L": "gray", "RGB": "rgb"}[run.mode]
        same = _same_folders(data, run.cfg.data)  # another dataset's val: no record
        unreadable = recorded_unreadable(run.run_dir) if same else ()
        bundle = build_data(replace(data, channels=channels, normalize="imagenet"), only=split, unreadable=unreadable)
        if split not in bundle.splits:
            raise missing_split_error(data, split, bundle.splits)
        if same:
            check_val_as_drawn(run.run_dir, bundle.splits.get("val"), data_label(data))
        s = in_run_class_order(bundle.splits[split], run.classes, data_label(data))
    else:  # any of the run's classes, as predict reads a folder; scoring needs the labels
        s = replace(folder_of_run_classes(source.folder, run.classes), full_scale=full_scale_of(data.bit_depth))
        if labels_required and -1 in s.targets:
            raise UserError(f"image folder {source.folder}: no class folders; scoring needs <class>/<image> labels")
    dataset = ImageDataset(s, run.mode, EvalTransform(data))
    # a score over fewer images than the split holds would not compare with other runs' scores
    dataset.unreadable_hint = "; fix or remove it (scarce data check lists every such file in a folder)"
    return dataset


CLASSES_SCHEMA = {"classes": list, "mode": str, "in_chans": int, "mean": list, "std": list}
PER_CLASS_KEYS = ("per_class", "precision", "recall", "f1", "support")


def finish_evaluation(run_dir: Path, cfg: Config, data: DataBundle, device: torch.device, num_workers: int) -> dict:
    """After training, one pass over val and test with the best weights: fit the temperature
    on val (calibration.json, with those of the final weights files), score test from the same
    outputs (autocast as it trained)."""
    loaded = load_run(run_dir / "best.safetensors", device)
    preprocess = loaded.preprocessor()
    source = prediction_source(cfg)
    loaders = {
        split: build_eval_loader(
            ImageDataset(data.splits[split], data.mode, EvalTransform(cfg.data)),
            cfg.batch_size * EVAL_BATCH_FACTOR,
            num_workers,
        )
        for split in ("val", "test")
        if split in data.splits
    }
    scores = {
        split: collect_scores(loaded.model, loader, preprocess, source, loaded.amp) for split, loader in loaders.items()
    }
    out: dict = {}
    if "val" in scores:
        others = final_weights_temperatures(run_dir, device, loaders["val"], source)
        out["calibration"] = calibrate(scores, source, run_dir, others)
        loaded.temperature = out["calibration"]["temperature"]
    if "test" in scores:
        out["test"] = _metrics_record(loaded, *scores["test"])
    return out


def final_weights_temperatures(run_dir: Path, device: torch.device, val_loader, source: str) -> dict[str, float]:
    """The temperatures of the run's final weights (last, last_ema), fitted on val as best's is,
    so that predicting with one of those files gives its own calibrated confidence; a file that
    holds best's weights (same epoch and source) is not fitted again, and gets best's."""
    best = tensors_metadata(run_dir / "best.safetensors")
    out: dict[str, float] = {}
    for name in ("last.safetensors", "last_ema.safetensors"):
        if not (run_dir / name).is_file() or tensors_metadata(run_dir / name) == best:
            continue
        final = load_run(run_dir / name, device)
        val = collect_scores(final.model, val_loader, final.preprocessor(), source, final.amp)
        out[name] = fitted_temperature(*val)[0]
    return out


def _metrics_record(run: LoadedRun, scores: torch.Tensor, targets: torch.Tensor) -> dict:
    """test_metrics.json / eval_<split>.json: accuracy metrics with per-class values by class name."""
    metrics = accuracy_metrics(scores, targets, len(run.classes))
    per_class = {k: {c: _json_number(v) for c, v in zip(run.classes, metrics[k])} for k in PER_CLASS_KEYS}
    return {**metrics, **per_class, "weights": str(run.weights)}


def _json_number(value):
    """NaN (a class with no image in the split) as null: strict JSON has no NaN."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _score(run: LoadedRun, loader) -> dict:
    """One pass of ``loader`` through the run's model, scored as at the end of training."""
    preprocess = run.preprocessor()
    return _metrics_record(run, *collect_scores(run.model, loader, preprocess, prediction_source(run.cfg), run.amp))


def check_loader_options(batch_size: int, num_workers: int) -> None:
    """evaluate's and predict's --batch-size / --workers, checked before any work."""
    if batch_size < 1 or num_workers < 0:
        raise UserError(f"--batch-size {batch_size} / --workers {num_workers}: expected >= 1 and >= 0")


def evaluate_run(
    path: str | Path,
    data: DataConfig | None,
    split: str = "test",
    out: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int = 2,
) -> dict:
    """``scarce evaluate``: score a run (or weights file) on a split; writes JSON (its path is
    returned as ``file``)."""
    check_loader_options(batch_size, num_workers)
    run = load_run(path, device)
    data = run_data_config(run, data)
    dataset = eval_dataset(run, data, split)
    result = _score(run, build_eval_loader(dataset, batch_size, num_workers))
    other = None if data is run.cfg.data else data_label(data)
    source = scored_source(data, split, own=other is None)
    result.update(split=split, data=data_label(data), source=source)
    default = run.run_dir / eval_file_name(split, other, Path(run.weights).stem)
    written = Path(out) if out else free_eval_path(default, source)
    atomic_write_json(written, result)
    return {**result, "file": str(written)}
