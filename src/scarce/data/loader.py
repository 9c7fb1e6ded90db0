"""From a :class:`DataConfig` to splits, datasets and seeded loaders."""
from __future__ import annotations

import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler, Subset

from scarce.config import AugmentConfig, DataConfig
from scarce.data.datasets import ImageDataset, Split, folder_split, is_gray_image
from scarce.data.fashion_mnist import fashion_mnist_splits
from scarce.data.transforms import EvalTransform, TrainTransform
from scarce.errors import UserError

DEMO_ROOT = Path(__file__).resolve().parent / "demo"
BUILTIN_DATASETS = ("demo", "fashion-mnist")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# No gradients, no optimizer state: evaluation batches can be this many times the training batch.
EVAL_BATCH_FACTOR = 4


@dataclass
class DataBundle:
    """The resolved dataset: its splits and how images enter the model."""
    splits: dict[str, Split]
    classes: list[str]
    mode: str            # PIL mode the images are converted to: 'L' or 'RGB'
    mean: list[float]
    std: list[float]

    @property
    def in_chans(self) -> int:
        return 1 if self.mode == "L" else 3


def resolve_splits(cfg: DataConfig) -> dict[str, Split]:
    """train (required), val and test (optional) splits of a built-in dataset or a folder."""
    if cfg.name == "fashion-mnist":
        return fashion_mnist_splits(cfg.root, cfg.per_class, cfg.val_per_class, cfg.split_seed)
    root = DEMO_ROOT if cfg.name == "demo" else Path(cfg.name)
    paths = {"train": cfg.train, "val": cfg.val, "test": cfg.test}
    if cfg.train is None and not (root / "train").is_dir():
        raise UserError(f"data '{cfg.name}': not a built-in dataset ({', '.join(BUILTIN_DATASETS)}) "
                        f"nor a folder with a train/ subfolder")
    splits = {"train": folder_split(cfg.train or root / "train")}
    classes = splits["train"].classes
    for name in ("val", "test"):
        path = paths[name] or (root / name if (root / name).is_dir() else None)
        if paths[name] is not None and not Path(paths[name]).is_dir():
            raise UserError(f"data.{name} {paths[name]}: folder not found")
        if path is not None:
            splits[name] = folder_split(path, classes)
    if "val" not in splits and cfg.val_fraction > 0:
        splits["train"], splits["val"] = split_off_val(splits["train"], cfg.val_fraction, cfg.split_seed)
    return splits


SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitSource:
    """Where the images of one split come from, for evaluation and prediction."""
    folder: Path | None  # read this folder; None: the split as training builds it (build_data)
    root: Path | None    # what the split's ids are reported relative to (None: dataset ids)


def locate_split(data: DataConfig, split: str) -> SplitSource:
    """The one decision of which images ``split`` names: a split of ``data`` (built-in, or a
    folder dataset with ``train/``, whose val may come from train) or an image folder
    (``data.<split>``, ``<root>/<split>``, a folder path given as ``split``, or a plain folder)."""
    root = DEMO_ROOT if data.name == "demo" else Path(data.name)
    if split not in SPLIT_NAMES:
        if Path(split).is_dir():
            return SplitSource(Path(split), Path(split))
        if data.name not in BUILTIN_DATASETS and (root / split).is_dir():
            return SplitSource(root / split, root)
        raise UserError(f"--split '{split}': not a split name ({', '.join(SPLIT_NAMES)}) nor an image folder")
    if data.name in BUILTIN_DATASETS:
        return SplitSource(None, DEMO_ROOT if data.name == "demo" else None)
    explicit = getattr(data, split)
    if explicit is not None:
        return SplitSource(Path(explicit), root)
    has_train = data.train is not None or (root / "train").is_dir()
    if has_train and ((root / split).is_dir() or split == "val"):  # no val/: training took val from train
        return SplitSource(None, root)
    if (root / split).is_dir():
        return SplitSource(root / split, root)
    if has_train:
        raise UserError(f"data '{data.name}': has no {split}/ folder")
    return SplitSource(root, root)  # a plain folder of images (or of class folders)


def split_off_val(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """A stratified, seeded val split taken from ``train``: per class ``round(fraction * n)``
    images (at least 1, and never a class's last image)."""
    rng = np.random.default_rng(seed)
    targets = np.asarray(train.targets)
    val_idx = []
    for cls in range(len(train.classes)):
        members = np.flatnonzero(targets == cls)
        take = min(max(1, round(fraction * len(members))), len(members) - 1)
        val_idx += rng.permutation(members)[:take].tolist()
    val_set = set(val_idx)
    keep = [i for i in range(len(targets)) if i not in val_set]
    val_idx = sorted(val_idx)

    def part(index: list[int]) -> Split:
        return replace(train, ids=[train.ids[i] for i in index], targets=[train.targets[i] for i in index],
                       array=train.array[index] if train.array is not None else None)
    return part(keep), replace(part(val_idx), from_train=True)


# data.cache=auto keeps decoded images when they fit in this many bytes.
CACHE_BUDGET_BYTES = 2 * 1024**3


def decoded_cache_sides(cfg: DataConfig, splits: dict[str, Split]) -> dict[str, int] | None:
    """Per split, the shorter side at which the up-front scan keeps decoded images (None: no cache).

    Train: 1.15 x the evaluation resize, so random crops still start from more pixels than they
    produce. Val/test: exactly the evaluation resize, which the evaluation transform then
    leaves as it is, so cached scores equal those of the image files. ``auto`` caches when the
    images, at those sides, fit in :data:`CACHE_BUDGET_BYTES` (estimated as square RGB).
    """
    files = {name: len(s.ids) for name, s in splits.items() if s.array is None}
    if cfg.cache == "none" or not files:
        return None
    eval_side = int(round(cfg.img_size / cfg.crop_pct))  # EvalTransform's Resize
    sides = {name: math.ceil(1.15 * eval_side) if name == "train" else eval_side for name in files}
    if cfg.cache == "auto" and sum(n * sides[name] ** 2 * 3 for name, n in files.items()) > CACHE_BUDGET_BYTES:
        return None
    return sides


def _sniff_mode(split: Split, probe: int = 16) -> str:
    """'L' when the first images are all grayscale, else 'RGB'."""
    if split.array is not None:
        return "L" if split.array.ndim == 3 else "RGB"
    for rel in split.ids[:probe]:
        try:
            with Image.open(Path(split.root) / rel) as img:
                if not is_gray_image(img):
                    return "RGB"
        except (OSError, Image.DecompressionBombError):
            continue  # bad files are reported by the preflight scan, not here
    return "L"


def build_data(cfg: DataConfig) -> DataBundle:
    splits = resolve_splits(cfg)
    mode = {"gray": "L", "rgb": "RGB"}.get(cfg.channels) or _sniff_mode(splits["train"])
    if mode == "L":
        mean, std = [float(np.mean(IMAGENET_MEAN))], [float(np.mean(IMAGENET_STD))]
    else:
        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    return DataBundle(splits=splits, classes=splits["train"].classes, mode=mode, mean=mean, std=std)


def build_dataset(bundle: DataBundle, split: str, data: DataConfig, augment: AugmentConfig | None) -> ImageDataset:
    """``augment`` None: the evaluation transform."""
    if split not in bundle.splits:
        raise UserError(f"data '{data.name}': has no {split} split (found: {', '.join(bundle.splits)})")
    transform = TrainTransform(data, augment, bundle.mean) if augment is not None else EvalTransform(data)
    return ImageDataset(bundle.splits[split], bundle.mode, transform)


def _seed_worker(worker_id: int) -> None:
    # torch seeds `random` and itself per worker; timm's RandAugment also draws from numpy.
    np.random.seed(torch.initial_seed() % 2**32)


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % 2**63


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample ``index``'s augmentation in ``epoch``: the same in any worker."""
    return (epoch_seed(seed, epoch) * 1_000_033 + index) % 2**63


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed python, numpy and torch (CPU) for a block, then restore their previous states, so
    per-sample seeding in the main process (``num_workers=0``) leaves dropout's stream alone.

    Uses ``torch.default_generator`` directly: ``torch.manual_seed`` also queues a lazy CUDA
    seed with a stack trace, ~100x slower, per sample.
    """
    states = random.getstate(), np.random.get_state(), torch.default_generator.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.default_generator.set_state(states[2])


class EpochSampler(DistributedSampler):
    """A :class:`DistributedSampler` that yields ``(epoch, index)``: the dataset seeds each
    sample's augmentation from them, so workers can live for the whole run and the number
    of workers changes no result."""

    def __iter__(self):
        return ((self.epoch, index) for index in super().__iter__())


class BalancedEpochSampler(EpochSampler):
    """Each epoch draws as many samples as the dataset has, with replacement, each class
    equally likely (weight 1 / class count), seeded by (seed, epoch); ranks take every
    ``world_size``-th draw. For imbalanced data (``data.sampler: balanced``)."""

    def __iter__(self):
        targets = torch.as_tensor(self.dataset.targets)
        weights = 1.0 / torch.bincount(targets).double()[targets]
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        drawn = torch.multinomial(weights, self.total_size, replacement=True, generator=generator).tolist()
        return ((self.epoch, index) for index in drawn[self.rank:self.total_size:self.num_replicas])


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


def build_train_loader(dataset: ImageDataset, batch_size: int, seed: int, num_workers: int,
                       rank: int = 0, world_size: int = 1, balanced: bool = False,
                       keep_last_batch: bool = False) -> DataLoader:
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
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      drop_last=drops_last_batch(per_rank, batch_size, keep_last_batch),
                      worker_init_fn=_seed_worker, persistent_workers=num_workers > 0,
                      pin_memory=torch.cuda.is_available())


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """The sampler's epoch: data order and, through ``(epoch, index)``, each sample's augmentation."""
    loader.sampler.set_epoch(epoch)


# Evaluation batches kept in memory up to this size (uint8): val is scored every epoch, twice with EMA.
KEEP_BATCHES_BYTES = 512 * 2**20


class KeptBatches:
    """An evaluation loader (deterministic transform, fixed order) whose batches are kept after
    the first complete pass and replayed: later passes decode and resize nothing. Keeps none
    when they would exceed ``max_bytes``."""

    def __init__(self, loader: DataLoader, max_bytes: int = KEEP_BATCHES_BYTES):
        self.loader, self.max_bytes = loader, max_bytes
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
        kept, size = [], 0
        for x, target in self.loader:
            size += x.nbytes
            if kept is not None and size <= self.max_bytes:
                kept.append((x, target))
            else:
                kept = None
            yield x, target
        self.batches = kept  # only once a pass has completed


def build_eval_loader(dataset: ImageDataset, batch_size: int, num_workers: int,
                      rank: int = 0, world_size: int = 1, persistent: bool = False) -> DataLoader:
    """In-order loader over this rank's shard (``rank::world_size``): no sample is padded or
    counted twice, so summed metrics are exact."""
    shard = dataset if world_size == 1 else Subset(dataset, list(range(rank, len(dataset), world_size)))
    return DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      worker_init_fn=_seed_worker, persistent_workers=persistent and num_workers > 0,
                      pin_memory=torch.cuda.is_available())
