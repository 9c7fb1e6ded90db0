"""Deterministic test-time augmentation (TTA): V views of every image, soft-voted.

View 0 is the clean evaluation view (resize to ``img_size / crop_pct``, center crop).
Views 1..V-1 start from that view and are augmented with randomness drawn from a seed
made of ``(seed, view, image id)`` only:

- odd views are mirrored horizontally when the run trained with flips (``augment.hflip > 0``);
- the augmented views go through the run's RandAugment when it has one
  (``augment.randaugment``, the paper's "same RandAugment used in training"), except view 1
  of a run that flips: it is the plain mirror, so ``V = 2`` is the classic clean + mirror
  pair for every run (on Fashion-MNIST a mirror view helped a little and RandAugment views
  hurt: BENCHMARKS.md), and RandAugment starts at view 2.

Nothing depends on the dataset order, the batch size or the number of loader workers,
so an image gets the same views (and probabilities) however it is loaded. Without
RandAugment views 2, 4, ... repeat views 0 and 1, so ``V > 2`` only helps with it.

One data pass: the dataset yields all V views of an image as uint8 ``[V, C, H, W]``
(decoded and resized once), a batch ``[B, V, C, H, W]`` is flattened to ``[B*V, ...]``
and goes through the model in chunks of ``chunk_size`` rows; the answer is the mean of
the V probability vectors (soft voting).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms.functional import pil_to_tensor

from scarce.config import AugmentConfig, DataConfig
from scarce.data.transforms import EvalTransform, create_randaugment
from scarce.engine.batch import BatchPreprocessor
from scarce.engine.loop import predict_outputs


def view_seed(seed: int, view: int, image_id: str) -> int:
    """A 63-bit seed from ``(seed, view, image id)``, stable across processes and runs.

    ``hash()`` of a str is salted per process, so a cryptographic digest is used instead.
    """
    # surrogateescape: a file name that is not UTF-8 hashes as its raw bytes
    digest = hashlib.blake2b(
        f"{seed}\x00{view}\x00{image_id}".encode("utf-8", "surrogateescape"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") >> 1


@contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed Python's ``random`` and NumPy's global generator, restoring both afterwards.

    timm's RandAugment draws from these global generators (it takes no generator
    argument), so a deterministic view needs them seeded around the call; restoring
    keeps the caller's random streams (e.g. a training loop in the same process) intact.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def first_randaugment_view(augment: AugmentConfig) -> int:
    """The first view that goes through RandAugment (2 when view 1 is the plain mirror)."""
    return 2 if augment.hflip > 0 else 1


def distinct_views(augment: AugmentConfig) -> int | None:
    """How many different views TTA can make for a run: 1 without flips or RandAugment (every
    view is the clean one), 2 with flips alone (clean and mirror), None (no limit) with RandAugment."""
    if augment.randaugment:
        return None
    return 2 if augment.hflip > 0 else 1


def augment_view(
    img: Image.Image,
    view: int,
    seed: int,
    flip: bool = True,
    randaugment: Callable[[Image.Image], Image.Image] | None = None,
) -> Image.Image:
    """View ``view`` of an evaluation-view image: mirrored when ``flip`` and ``view`` is odd,
    then ``randaugment`` under ``seed`` (not on view 1 when ``flip``: that one is the plain
    mirror). View 0 is returned unchanged."""
    if view == 0:
        return img
    if flip and view % 2 == 1:
        img = ImageOps.mirror(img)
    if randaugment is not None and not (flip and view == 1):
        with seeded_global_rngs(seed):
            img = randaugment(img)
    return img


def tta_views(
    img: Image.Image,
    image_id: str,
    views: int | Sequence[int],
    *,
    seed: int = 0,
    flip: bool = True,
    randaugment: Callable[[Image.Image], Image.Image] | None = None,
) -> torch.Tensor:
    """The TTA views of one evaluation-view image -> uint8 ``[V, C, H, W]``.

    ``views``: how many (views ``0..V-1``) or which view indices; view ``v`` of image
    ``image_id`` is drawn with ``view_seed(seed, v, image_id)``.
    """
    indices = range(views) if isinstance(views, int) else views
    return torch.stack(
        [pil_to_tensor(augment_view(img, v, view_seed(seed, v, image_id), flip, randaugment)) for v in indices]
    )


class TTATransform:
    """Dataset transform ``(dataset, index, img) -> uint8 [V, C, H, W]``: the TTA views of
    image ``index``, keyed by ``dataset.ids[index]``. ``views``: a count or view indices."""

    def __init__(
        self, data: DataConfig, augment: AugmentConfig, fill: list[int], views: int | Sequence[int], seed: int = 0
    ):
        self.eval_view = EvalTransform(data).pipeline
        self.views = list(range(views)) if isinstance(views, int) else list(views)
        if not self.views or min(self.views) < 0:
            raise ValueError(f"views must be a positive count or view indices >= 0, got {views!r}")
        augmented = max(self.views) >= first_randaugment_view(augment)
        self.randaugment = (
            create_randaugment(augment.randaugment, data.img_size, fill) if augment.randaugment and augmented else None
        )
        self.flip = augment.hflip > 0
        self.seed = seed

    def __call__(self, dataset, index: int, img: Image.Image) -> torch.Tensor:
        return tta_views(
            self.eval_view(img),
            str(dataset.ids[index]),
            self.views,
            seed=self.seed,
            flip=self.flip,
            randaugment=self.randaugment,
        )


@torch.no_grad()
def tta_predict(
    model: torch.nn.Module,
    loader,
    preprocess: BatchPreprocessor,
    probs_fn: Callable[[object], torch.Tensor],
    *,
    chunk_size: int = 64,
    amp: str = "none",
    per_view: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-voted probabilities over TTA views, in loader order.

    ``loader`` yields ``(x uint8 [B, V, C, H, W], target [B])`` (a :class:`TTATransform`
    dataset); ``probs_fn(outputs) -> [b, C]``. Views go through the model ``chunk_size``
    rows at a time. Returns ``(probs [N, C], targets [N])``, or ``probs [N, V, C]`` (one
    row per view, not averaged) when ``per_view``.
    """
    out, targets = [], []
    for x, target in loader:
        b, v = x.shape[:2]
        chunks = ((chunk, None) for chunk in x.reshape(b * v, *x.shape[2:]).split(chunk_size))
        # the one forward loop of evaluation (eval mode, autocast, float outputs)
        probs = [probs_fn(outputs).float() for outputs, _ in predict_outputs(model, chunks, preprocess, amp)]
        p = torch.cat(probs).reshape(b, v, -1)
        out.append((p if per_view else p.mean(dim=1)).cpu())
        targets.append(torch.as_tensor(target))
    if not out:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return torch.cat(out), torch.cat(targets)
