"""The Python API, as short as the CLI.

Example::

    import scarce
    run = scarce.train(recipe="demo", epochs=30)           # or data="path/to/folder", out="runs/x"
    model = scarce.load(run.path)
    result = model.predict(["a.png", pil_image, uint8_tensor, uint8_array])  # tensor [C, H, W], array [H, W, C]
    result.labels, result.probs                             # ["Bag", ...], float32 [N, C]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scarce.errors import UserError


@dataclass
class TrainedRun:
    """A finished (or stopped) run: its directory and ``summary.json`` contents."""

    path: Path
    summary: dict = field(default_factory=dict)

    def load(self, device: str = "auto") -> Classifier:
        return load(self.path, device)


def _nested(settings: dict[str, Any]) -> dict:
    tree: dict = {}
    for key, value in settings.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def train(
    recipe: str | None = None,
    data: str | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = False,
    **settings: Any,
) -> TrainedRun:
    """Train like ``scarce train``; ``recipe`` a built-in name or YAML file (None: the built-in
    defaults, as the command without ``--recipe``); ``settings`` are config keys (``epochs=30``,
    or dotted keys through a dict: ``**{"optim.lr": 0.01}``). Returns the run directory and its
    summary."""
    import time

    from scarce.config import _merge, load_config
    from scarce.engine.trainer import train as train_run

    extra = _nested(settings)
    if data is not None:
        extra = _merge(extra, {"data": {"name": str(data)}})
    if resume:
        if out is None:
            raise UserError("scarce.train(resume=True) needs out= (the run directory to continue)")
        cfg = load_config(str(Path(out) / "config.yaml"), None, extra)
    else:
        cfg = load_config(recipe, None, extra)
    name = Path(recipe).stem if recipe else "run"
    run_dir = Path(out) if out else Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return TrainedRun(run_dir, train_run(cfg, run_dir, resume=resume, progress=progress))


@dataclass
class ImagePredictions:
    """``labels[i]`` = the class of image i, ``probs`` float32 ``[N, C]`` (calibrated)."""

    labels: list[str]
    probs: np.ndarray
    classes: list[str]

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1)

    def top(self, i: int, k: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(-self.probs[i])[:k]
        return [(self.classes[j], float(self.probs[i, j])) for j in order]


IMAGE_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA: the layouts Image.fromarray reads from uint8


def array_image(item: Any, index: int) -> np.ndarray:
    """A uint8 torch tensor ``[C, H, W]`` / ``[H, W]`` or numpy array ``[H, W, C]`` / ``[H, W]``
    (``C`` 1, 3 or 4) -> uint8 ``[H, W]`` or ``[H, W, C]`` for ``Image.fromarray``.

    Tensors are channels-first (torchvision's layout) and arrays channels-last (PIL's and
    OpenCV's), so a tensor ``[H, W, 3]`` is refused here rather than read as a 3-pixel-wide
    image, which Pillow fails on with a TypeError that does not say what was expected."""
    import torch

    is_tensor = isinstance(item, torch.Tensor)
    kind, layout = ("tensor", "[C, H, W]") if is_tensor else ("numpy array", "[H, W, C]")
    dtype = str(item.dtype).removeprefix("torch.")
    shape = list(item.shape)
    channels = shape[0] if is_tensor else shape[-1]
    if dtype != "uint8" or len(shape) not in (2, 3) or (len(shape) == 3 and channels not in IMAGE_CHANNELS):
        raise UserError(
            f"image {index}: uint8 {kind} {layout} or [H, W] expected (C = 1, 3 or 4), got {dtype} {kind} {shape}"
        )
    array = item.detach().cpu().numpy() if is_tensor else item
    if array.ndim == 3:
        array = array.transpose(1, 2, 0) if is_tensor else array
        array = array[:, :, 0] if channels == 1 else array
    return np.ascontiguousarray(array)


class Classifier:
    """A trained run ready to predict images: paths, PIL images, uint8 tensors ``[C, H, W]`` /
    ``[H, W]`` or uint8 numpy arrays ``[H, W, C]`` / ``[H, W]`` (``C`` 1, 3 or 4), through the
    run's evaluation transform, prediction source and temperature."""

    def __init__(self, path: str | os.PathLike, device: str = "auto"):
        import torch

        from scarce.engine.batch import BatchPreprocessor
        from scarce.engine.evaluation import load_run
        from scarce.engine.hardware import device_name

        self.device = torch.device(device_name(device))
        self.run = load_run(path, self.device)
        self.classes = self.run.classes
        self._preprocess = BatchPreprocessor(self.run.mean, self.run.std, self.device)

    def _image(self, item: Any, index: int):
        import torch
        from PIL import Image

        from scarce.data.datasets import read_image, to_mode

        if isinstance(item, (str, os.PathLike)):
            return read_image(item, self.run.mode)
        if isinstance(item, Image.Image):
            return to_mode(item, self.run.mode)
        if isinstance(item, (torch.Tensor, np.ndarray)):
            return to_mode(Image.fromarray(array_image(item, index)), self.run.mode)
        raise UserError(
            f"image {index}: expected a file path, a PIL image, a uint8 tensor [C, H, W] or a uint8 numpy "
            f"array [H, W, C], got {type(item).__name__}"
        )

    def predict(self, images: Sequence[Any], batch_size: int = 64) -> ImagePredictions:
        import torch

        from scarce.data.transforms import EvalTransform
        from scarce.engine.factories import probs_function
        from scarce.engine.loop import predict_outputs

        transform = EvalTransform(self.run.cfg.data)
        probs_fn = probs_function(self.run.cfg, self.run.temperature)
        batches = (
            (
                torch.stack(
                    [
                        transform(None, i, self._image(item, start + i))
                        for i, item in enumerate(images[start : start + batch_size])
                    ]
                ),
                None,
            )
            for start in range(0, len(images), batch_size)
        )
        chunks = [
            probs_fn(outputs).cpu().numpy()
            for outputs, _ in predict_outputs(self.run.model, batches, self._preprocess, self.run.amp)
        ]
        probs = np.concatenate(chunks) if chunks else np.zeros((0, len(self.classes)), np.float32)
        return ImagePredictions([self.classes[j] for j in probs.argmax(1)], probs, list(self.classes))


def load(path: str | os.PathLike, device: str = "auto") -> Classifier:
    """A run directory (its best weights) or a weights file inside one, ready to predict."""
    return Classifier(path, device)
