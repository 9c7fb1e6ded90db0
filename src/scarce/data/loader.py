"""From a :class:`DataConfig` to splits, datasets and seeded loaders."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler, Subset

from scarce.config import AugmentConfig, DataConfig
from scarce.data.datasets import ImageDataset, Split, full_scale_of, is_gray_image, spread_picks
from scarce.data.seeding import epoch_seed, seed_worker
from scarce.data.splits import missing_split_error, resolve_splits
from scarce.data.transforms import EvalTransform, TrainTransform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# No gradients, no optimizer state: evaluation batches can be this many times the training batch.
EVAL_BATCH_FACTOR = 4


@dataclass
class DataBundle:
    """The resolved dataset: its splits and how images enter the model."""

    splits: dict[str, Split]
    classes: list[str]
    mode: str  # PIL mode the images are converted to: 'L' or 'RGB'
    mean: list[float]
    std: list[float]
    _fills: dict = field(default_factory=dict, repr=False)

    @property
    def in_chans(self) -> int:
        return 1 if self.mode == "L" else 3

    def augment_fill(self, augment: AugmentConfig) -> list[int]:
        """``augment.fill`` resolved on the train split: one int in [0, 255] per channel."""
        if augment.fill not in self._fills:
            from scarce.data.image_stats import resolve_fill

            self._fills[augment.fill] = resolve_fill(augment.fill, self.splits["train"], self.mode, self.mean)
        return self._fills[augment.fill]


# data.cache=auto keeps decoded images when they fit in this many bytes.
CACHE_BUDGET_BYTES = 2 * 1024**3


def decoded_cache_sides(cfg: DataConfig, splits: dict[str, Split], crop: str = "resized") -> dict[str, int] | None:
    """Per split, the shorter side at which the up-front scan keeps decoded images (None: no cache).

    Train, with ``crop`` (``augment.crop``) ``resized``: 1.15 x the evaluation resize, so random
    crops still start from more pixels than they produce; ``pad``: ``img_size``, the side the
    whole image is resized to before its shift, so the cache changes no training pixel (a second
    resize from 1.15 x had blurred them). Val/test: exactly the evaluation resize, which the
    evaluation transform then leaves as it is, so cached scores equal those of the image files.
    ``auto`` caches when the images, at those sides, fit in :data:`CACHE_BUDGET_BYTES` (estimated
    as square RGB).
    """
    files = {name: len(s.ids) for name, s in splits.items() if s.array is None}
    if cfg.cache == "none" or not files:
        return None
    eval_side = int(round(cfg.img_size / cfg.crop_pct))  # EvalTransform's Resize
    train_side = cfg.img_size if crop == "pad" else math.ceil(1.15 * eval_side)
    sides = {name: train_side if name == "train" else eval_side for name in files}
    if cfg.cache == "auto" and sum(n * sides[name] ** 2 * 3 for name, n in files.items()) > CACHE_BUDGET_BYTES:
        return None
    return sides


def _sniff_mode(split: Split, probe: int = 16) -> str:
    """'L' when ``probe`` images spread over the split (so over its classes) are all grayscale, else
    'RGB'. The up-front scan looks at every image and switches to RGB for any colour one: a colour
    class caught here spares that second pass."""
    if split.array is not None:
        return "L" if split.array.ndim == 3 else "RGB"
    for i in spread_picks(len(split.ids), probe):
        try:
            with Image.open(Path(split.root) / split.ids[i]) as img:
                if not is_gray_image(img):
                    return "RGB"
        except (OSError, Image.DecompressionBombError):
            continue  # bad files are reported by the preflight scan, not here
    return "L"


def build_data(cfg: DataConfig, only: str | None = None, unreadable: Collection[str] = ()) -> DataBundle:
    """The splits of ``cfg`` (with ``only``: that split; ``unreadable``: train files left out of a val
    draw; see :func:`resolve_splits`), image mode and normalisation."""
    scale = full_scale_of(cfg.bit_depth)
    splits = {name: replace(split, full_scale=scale) for name, split in resolve_splits(cfg, only, unreadable).items()}
    mode = {"gray": "L", "rgb": "RGB"}.get(cfg.channels) or _sniff_mode(splits["train"])
    if cfg.normalize == "train":
        from scarce.data.image_stats import pixel_mean_std

        mean, std = pixel_mean_std(splits["train"], mode)
    elif mode == "L":
        mean, std = [float(np.mean(IMAGENET_MEAN))], [float(np.mean(IMAGENET_STD))]
    else:
        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    return DataBundle(splits=splits, classes=splits["train"].classes, mode=mode, mean=mean, std=std)


def build_dataset(bundle: DataBundle, split: str, data: DataConfig, augment: AugmentConfig | None) -> ImageDataset:
    """``augment`` None: the evaluation transform."""
    if split not in bundle.splits:
        raise missing_split_error(data, split, bundle.splits)
    transform = (
        TrainTransform(data, augment, bundle.augment_fill(augment)) if augment is not None else EvalTransform(data)
    )
    return ImageDataset(bundle.splits[split], bundle.mode, transform)


def with_draws(epoch: int, drawn: list[int]) -> list[tuple[int, int, int]]:
    """``(epoch, index, draw)`` for each index of an epoch's order: ``draw`` counts the index's
    earlier places in it, so an image drawn again (with replacement, or padding) is augmented
    anew rather than repeated view for view; 0 for the first, as every image of a plain shuffle."""
    seen: dict[int, int] = {}
    out = []
    for index in drawn:
        out.append((epoch, index, seen.get(index, 0)))
        seen[index] = seen.get(index, 0) + 1
    return out


class EpochSampler(DistributedSampler):
    """A :class:`DistributedSampler` that yields ``(epoch, index, draw)`` (:func:`with_draws`):
    the dataset seeds each sample's augmentation from them, so workers can live for the whole run
    and neither the number of workers nor of processes changes a sample's view.

    The order is seeded by ``epoch_seed(seed, epoch)``, not torch's ``seed + epoch``: with that,
    seed s at epoch e + 1 shuffles as seed s + 1 at epoch e, and runs of seeds 0, 1, 2 would
    share all but one epoch's order. Padding and rank slicing are torch's."""

    def __iter__(self):
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        # every rank the same number of samples: the order repeats from its start
        order = (order * math.ceil(self.total_size / len(order)))[: self.total_size]
        n = len(self.dataset)  # the repeats are whole copies of the order: draw = place // n
        return ((self.epoch, order[p], p // n) for p in range(self.rank, self.total_size, self.num_replicas))


class BalancedEpochSampler(EpochSampler):
    """Each epoch draws as many samples as the dataset has, with replacement, each class
    equally likely (weight 1 / class count), seeded by (seed, epoch); ranks take every
    ``world_size``-th draw. For imbalanced data (``data.sampler: balanced``)."""

    def __iter__(self):
        targets = torch.as_tensor(self.dataset.targets)
        weights = 1.0 / torch.bincount(targets).double()[targets]
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        drawn = torch.multinomial(weights, self.total_size, replacement=True, generator=generator).tolist()
        return iter(with_draws(self.epoch, drawn)[self.rank : self.total_size : self.num_replicas])


def drops_last_batch(per_rank: int, batch_size: int, keep_last_batch: bool) -> bool:
    """Whether an epoch's last, smaller batch is dropped (see ``data.keep_last_batch``): always
    when it would hold one image (BatchNorm cannot normalise it)."""
    return per_rank > batch_size and (not keep_last_batch or per_rank % batch_size == 1)


def steps_per_epoch(images: int, batch_size: int, world_size: int = 1, keep_last_batch: bool = False) -> int:
    """Optimizer steps per epoch of :func:`build_train_loader` over ``images`` train images."""
    per_rank = math.ceil(images / world_size)
    if drops_last_batch(per_rank, batch_size, keep_last_batch):
        return per_rank // batch_size
    return math.ceil(per_rank / batch_size)


def build_train_loader(
    dataset: ImageDataset,
    batch_size: int,
    seed: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
    balanced: bool = False,
    keep_last_batch: bool = False,
) -> DataLoader:
    """Shuffled loader whose order and augmentation depend only on (seed, epoch, index).

    Call :func:`set_loader_epoch` before each epoch. The sampler is distributed also for one
    process, so 1 and N processes share one code path. Workers persist across epochs.
    """
    dataset.seed = seed
    sampler_type = BalancedEpochSampler if balanced else EpochSampler
    sampler = sampler_type(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    per_rank = len(sampler)
    # keep_last_batch: with scarce data every image may count; a last batch of one image is
    # dropped either way (BatchNorm cannot normalise it)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drops_last_batch(per_rank, batch_size, keep_last_batch),
        worker_init_fn=seed_worker,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """The sampler's epoch: data order and, through ``(epoch, index)``, each sample's augmentation."""
    loader.sampler.set_epoch(epoch)


# Evaluation batches kept in memory up to this size (uint8): val is scored every epoch, twice with EMA.
KEEP_BATCHES_BYTES = 512 * 2**20


def keeps_batches(images: int, image_bytes: int, max_bytes: int = KEEP_BATCHES_BYTES) -> bool:
    """Whether :class:`KeptBatches` keeps ``images`` evaluation images of ``image_bytes`` each
    (uint8: channels x side x side): decided before the loader is built, so a loader whose batches
    are kept needs no persistent workers and one whose are not holds none of them."""
    return images * image_bytes <= max_bytes


class KeptBatches:
    """An evaluation loader (deterministic transform, fixed order) whose batches are kept after
    the first complete pass and replayed when ``keep`` (:func:`keeps_batches`): later passes
    decode and resize nothing."""

    def __init__(self, loader: DataLoader, keep: bool):
        self.loader, self.keep = loader, keep
        self.batches: list | None = None

    @property
    def dataset(self):
        return self.loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        if self.batches is not None:
            yield from self.batches
            return
        if not self.keep:
            yield from self.loader
            return
        kept = []
        for batch in self.loader:
            kept.append(batch)
            yield batch
        self.batches = kept  # only once a pass has completed


def eval_shard(samples: int, rank: int = 0, world_size: int = 1) -> range:
    """The indices of this rank's evaluation shard of ``samples`` (``rank::world_size``)."""
    return range(rank, samples, world_size)


def build_eval_loader(
    dataset: ImageDataset,
    batch_size: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
    persistent: bool = False,
) -> DataLoader:
    """In-order loader over this rank's shard (:func:`eval_shard`): no sample is padded or
    counted twice, so summed metrics are exact."""
    shard = dataset if world_size == 1 else Subset(dataset, list(eval_shard(len(dataset), rank, world_size)))
    return DataLoader(
        shard,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        worker_init_fn=seed_worker,
        persistent_workers=persistent and num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
