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
    or dotted keys through a dict: ``**{"optim.lr": 0.01}``). ``resume=True`` continues the run in
    ``out`` from its own config.yaml (``recipe`` is not read then, so one call serves a first start and
    a requeue). Returns the run directory and its summary."""
    from scarce.config import _merge, load_config
    from scarce.data.splits import data_fields
    from scarce.engine.run_dir import new_run_dir, resume_config_path
    from scarce.engine.trainer import train as train_run

    extra = _nested(settings)
    if data is not None:
        train_given = extra.get("data", {}).get("train") is not None
        extra = _merge(extra, {"data": data_fields(str(data), train_given=train_given)})
    if resume:
        if out is None:
            raise UserError("scarce.train(resume=True) needs out= (the run directory to continue)")
        cfg = load_config(resume_config_path(Path(out), f"scarce.train(resume=True, out={str(out)!r})"), None, extra)
    else:
        cfg = load_config(recipe, None, extra)
    with new_run_dir(out, Path(recipe).stem if recipe else "run") as run_dir:
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

        from scarce.engine.evaluation import load_run
        from scarce.engine.hardware import device_name

        self.device = torch.device(device_name(device))
        self.run = load_run(path, self.device)
        self.classes = self.run.classes
        self._preprocess = self.run.preprocessor()

    def _image(self, item: Any, index: int):
        import torch
        from PIL import Image

        from scarce.data.datasets import full_scale_of, read_image, to_mode, upright_in_mode

        full_scale = full_scale_of(self.run.cfg.data.bit_depth)
        if isinstance(item, (str, os.PathLike)):
            try:
                return read_image(item, self.run.mode, full_scale)
            except UserError as exc:
                raise _unreadable(item, exc) from None
        if isinstance(item, Image.Image):
            return upright_in_mode(item, self.run.mode, full_scale)  # as a file of it would be read
        if isinstance(item, (torch.Tensor, np.ndarray)):
            return to_mode(Image.fromarray(array_image(item, index)), self.run.mode)
        raise UserError(
            f"image {index}: expected a file path, a PIL image, a uint8 tensor [C, H, W] or a uint8 numpy "
            f"array [H, W, C], got {type(item).__name__}"
        )

    @staticmethod
    def _view_key(item: Any, index: int) -> str:
        """What an image's TTA views are drawn from: its path as given, or its pixels' digest for an
        in-memory image, so an image gets the same views wherever it stands in the list."""
        import hashlib

        import torch
        from PIL import Image

        if isinstance(item, (str, os.PathLike)):
            return os.fspath(item)
        if isinstance(item, Image.Image):
            pixels = np.asarray(item)
        elif isinstance(item, (torch.Tensor, np.ndarray)):
            pixels = array_image(item, index)
        else:
            return f"item:{index}"  # refused when it is read
        return "pixels:" + hashlib.blake2b(pixels.tobytes() + str(pixels.shape).encode(), digest_size=16).hexdigest()

    def predict(self, images: Sequence[Any], batch_size: int = 64, tta: int = 1, seed: int = 0) -> ImagePredictions:
        """Calibrated probabilities of ``images``, soft-voted over ``tta`` views (1: the clean
        evaluation view; 2: clean + mirror for a run that flipped, as ``scarce predict --tta 2``;
        more: the run's RandAugment drawn from ``seed`` and each image's path or pixels). A vote
        over views uses the temperature fitted on the run's val split with as many views (the
        first call for a view count fits it, once)."""
        import torch

        from scarce.engine.factories import probs_function
        from scarce.inference.tta import TTATransform, tta_predict
        from scarce.inference.tta_calibration import tta_temperature

        if tta < 1:
            raise UserError(f"tta: expected a number of views >= 1, got {tta}")
        if isinstance(images, (str, os.PathLike)) or hasattr(images, "getpixel"):  # one image, not a list
            raise UserError(f"images: expected a list of images, got one ({images!r:.60}); give [image]")
        if batch_size < 1:
            raise UserError(f"batch_size: expected >= 1, got {batch_size}")
        run = self.run
        transform = TTATransform(run.cfg.data, run.cfg.augment, run.augment_fill, tta, seed)
        # only RandAugment views draw from the key: without them (tta 1 or 2), no image is hashed
        keyed = transform.randaugment is not None
        keys = _Keys([self._view_key(item, i) if keyed else str(i) for i, item in enumerate(images)])

        def batches():  # uint8 [B, V, C, H, W]: every view of batch_size images at a time
            for start in range(0, len(images), batch_size):
                rows = range(start, min(start + batch_size, len(images)))
                yield torch.stack([transform(keys, i, self._image(images[i], i)) for i in rows]), [0] * len(rows)

        probs_fn = probs_function(run.cfg, tta_temperature(run, tta, batch_size)[0])
        probs, _ = tta_predict(run.model, batches(), self._preprocess, probs_fn, chunk_size=batch_size, amp=run.amp)
        probs = probs.numpy().astype(np.float32) if len(images) else np.zeros((0, len(self.classes)), np.float32)
        return ImagePredictions([self.classes[j] for j in probs.argmax(1)], probs, list(self.classes))


API_UNREADABLE_HINT = "; fix or remove it, or leave it out of the images to predict"  # the CLI names --skip-bad-images


def _unreadable(path: str | os.PathLike, exc: UserError) -> UserError:
    """The CLI's one line for an image file that cannot be read (why: an empty file, a truncated
    one), where Pillow's own error does not say (an empty file "cannot identify image file");
    ``exc`` itself where the file scans as readable (it failed later, e.g. converting its mode)."""
    from scarce.data.check import check_image
    from scarce.inference.predict import unreadable_image_message

    check = check_image(path)
    return exc if check.ok else UserError(unreadable_image_message(path, check.reason, hint=API_UNREADABLE_HINT))


@dataclass
class _Keys:
    """The ``dataset.ids`` a :class:`~scarce.inference.tta.TTATransform` keys views by."""

    ids: list[str]


def load(path: str | os.PathLike, device: str = "auto") -> Classifier:
    """A run directory (its best weights) or a weights file inside one, ready to predict."""
    return Classifier(path, device)
