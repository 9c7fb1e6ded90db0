"""Which images a split is: the splits of a built-in dataset or an image folder, a val split
taken from train, and the one decision of which images ``evaluate`` / ``predict`` read."""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from scarce.config import DataConfig, check_data_source, data_label, folders_only
from scarce.data.datasets import IMAGE_EXTENSIONS, Split, folder_split, scan_image_folder
from scarce.data.fashion_mnist import fashion_mnist_splits
from scarce.errors import UserError

DEMO_ROOT = Path(__file__).resolve().parent / "demo"
BUILTIN_DATASETS = ("demo", "fashion-mnist")


SPLIT_NAMES = ("train", "val", "test")
# The names a val folder goes by beside train/ (timm's synonyms; Kaggle and Roboflow export valid/)
VAL_FOLDER_NAMES = ("val", "valid", "validation")


def split_folder(root: Path | None, split: str) -> Path | None:
    """``root``'s folder of ``split`` (val: ``val/``, ``valid/`` or ``validation/``, the first there
    is); None where it has none."""
    if root is None:
        return None
    names = VAL_FOLDER_NAMES if split == "val" else (split,)
    return next((root / name for name in names if (root / name).is_dir()), None)


def dataset_root(cfg: DataConfig) -> Path | None:
    """The folder whose train/ val/ test/ fill in the splits not given as folders. The demo is
    the default data, not a choice: a train folder of one's own never borrows its val or test."""
    name = folders_only(cfg).name
    if name is None:
        return None
    return DEMO_ROOT if name == "demo" else Path(name)


def resolve_splits(cfg: DataConfig, only: str | None = None, unreadable: Collection[str] = ()) -> dict[str, Split]:
    """train (required), val and test (optional) splits of a built-in dataset or a folder; with
    ``only``, the folders of the other splits are not read (train's is: it names the classes), so a
    problem in a split not asked for does not block this one. ``unreadable``: paths of train files
    (the up-front scan could not decode them, and skipped them) left out before a val split is drawn
    from train."""
    paths = {"train": cfg.train, "val": cfg.val, "test": cfg.test}
    if cfg.name == "fashion-mnist":
        if any(paths.values()):
            given = next(f"data.{k}" for k, v in paths.items() if v)
            raise UserError(
                f"{given}: image folders cannot be mixed with the built-in fashion-mnist; give --data FOLDER"
            )
        return fashion_mnist_splits(cfg.root, cfg.per_class, cfg.val_per_class, cfg.split_seed)
    check_data_source(cfg)
    root = dataset_root(cfg)
    if root is not None and cfg.train is not None and not root.is_dir() and not (cfg.val and cfg.test):
        missing = " and ".join(f"--{k}" for k in ("val", "test") if not paths[k])
        raise UserError(  # a mistyped root would silently leave the run without those splits
            f"data '{cfg.name}': not a built-in dataset ({', '.join(BUILTIN_DATASETS)}) nor a folder; beside "
            f"--train it names the folder whose val/ and test/ fill in {missing}: fix the path, or leave --data out"
        )
    if cfg.train is None and not (root / "train").is_dir():
        raise _no_dataset_error(cfg.name, root)
    splits = {"train": folder_split(cfg.train or root / "train")}
    classes = splits["train"].classes
    val_folder = False  # a val folder, read or not: then none is taken from train
    for name in ("val", "test"):
        path = paths[name] or split_folder(root, name)
        shapes_the_split = only is None or name == only or (name == "val" and only == "train")
        if paths[name] is not None and not Path(paths[name]).is_dir() and shapes_the_split:
            raise UserError(f"data.{name} {paths[name]}: folder not found")
        val_folder = val_folder or (name == "val" and path is not None)
        if path is not None and (only is None or name == only):
            splits[name] = folder_split(path, classes)
    if not val_folder and cfg.val_fraction > 0:
        train = splits["train"]
        if unreadable:  # else a class whose val draw is a bad file has no val image, and its train one image less
            left_out = {Path(path) for path in unreadable}
            keep = [i for i, name in enumerate(train.ids) if Path(train.root or "") / name not in left_out]
            train = replace(train, ids=[train.ids[i] for i in keep], targets=[train.targets[i] for i in keep])
        splits["train"], splits["val"] = split_off_val(train, cfg.val_fraction, cfg.split_seed)
    return splits


def _no_dataset_error(name: str, root: Path) -> UserError:
    """``--data`` names neither a built-in dataset nor a folder with train/: what it is instead, and
    the layouts that are read."""
    close = difflib.get_close_matches(root.name, BUILTIN_DATASETS, n=1) if not root.exists() else []
    if not root.exists():
        hint = ""  # a typo: the close match, if any, says more than the layouts
    elif is_class_folder_root(root):
        hint = f"; for a folder of <class>/<image> give --train {name} (val is then taken from it)"
    else:
        loose = root.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in root.iterdir())
        hint = (
            f"{'; its images are not in class folders' if loose else ''}; the layouts read are "
            f"<root>/train/<class>/<image> (val/ and test/ beside train/ optional), given as --data, and "
            f"<class>/<image>, given as --train (data check and augment preview take either)"
        )
    return UserError(
        f"data '{name}': not a built-in dataset ({', '.join(BUILTIN_DATASETS)}) nor a folder with a train/ subfolder"
        + (f" (close: {close[0]})" if close else "")
        + hint
    )


def is_class_folder_root(path: str | os.PathLike) -> bool:
    """A folder of ``<class>/<image>`` with no ``train/`` in it (what ``--train`` takes)."""
    path = Path(path)
    if not path.is_dir() or (path / "train").is_dir():
        return False
    return any(p.is_dir() and p.name not in SPLIT_NAMES + VAL_FOLDER_NAMES for p in path.iterdir())


def data_fields(name: str, train_given: bool = False) -> dict[str, str]:
    """The ``data`` keys of a ``--data`` argument (train's, the tools', ``scarce.train(data=...)``): a
    built-in dataset or image-folder root is ``data.name``; a folder of ``<class>/<image>`` is also
    the train split (as ``--train`` gives it; val is then taken from it, and it has no test split),
    unless a train folder is given beside it (``train_given``)."""
    if not train_given and name not in BUILTIN_DATASETS and is_class_folder_root(name):
        return {"name": name, "train": name}
    return {"name": name}


def val_taken_from_train(data: DataConfig) -> bool:
    """An image-folder dataset whose val split training takes from train (no val folder given or
    beside train/, and ``val_fraction`` > 0)."""
    if data.name == "fashion-mnist" or data.val is not None or data.val_fraction <= 0:
        return False
    return split_folder(dataset_root(data), "val") is None


def split_seed_samples(data: DataConfig) -> bool:
    """Whether ``data.split_seed`` chooses images: fashion-mnist's per-class samples, or the val
    split taken from a train folder (a folder with val/ is the same images under any split seed)."""
    return data.name == "fashion-mnist" or val_taken_from_train(data)


def missing_split_error(cfg: DataConfig, split: str, read: Iterable[str], hint: str = "") -> UserError:
    """``split`` is not among the splits ``read`` of ``cfg``: the message lists every split there is,
    the folders that ``only=`` left unread included (and ends with ``hint``, what to give instead)."""
    root = dataset_root(cfg) if cfg.name not in BUILTIN_DATASETS else None
    given = {name for name in SPLIT_NAMES if getattr(cfg, name, None)}
    folders = {name for name in SPLIT_NAMES if split_folder(root, name) is not None}
    found = [name for name in SPLIT_NAMES if name in {*read, *given, *folders}]
    return UserError(f"data '{data_label(cfg)}': has no {split} split (found: {', '.join(found)}){hint}")


@dataclass(frozen=True)
class SplitSource:
    """Where the images of one split come from, for evaluation and prediction."""

    folder: Path | None  # read this folder; None: the split as training builds it (build_data)
    root: Path | None  # what the split's ids are reported relative to (None: dataset ids)


def locate_split(data: DataConfig, split: str) -> SplitSource:
    """The one decision of which images ``split`` names: a split of ``data`` (built-in, or a
    folder dataset with ``train/``, whose val may come from train) or an image folder
    (``data.<split>``, ``<root>/<split>``, a folder path given as ``split``, or a plain folder)."""
    root = dataset_root(data)
    if split not in SPLIT_NAMES:
        if Path(split).is_dir():
            return SplitSource(Path(split), Path(split))
        if root is not None and data.name not in BUILTIN_DATASETS and (root / split).is_dir():
            return SplitSource(root / split, root)
        raise UserError(f"--split '{split}': not a split name ({', '.join(SPLIT_NAMES)}) nor an image folder")
    if data.name == "fashion-mnist" or root == DEMO_ROOT:
        return SplitSource(None, DEMO_ROOT if root == DEMO_ROOT else None)
    explicit = getattr(data, split)
    # a train folder that training took val from: its train split is what is left (as trained)
    if explicit is not None and split == "train" and val_taken_from_train(data):
        return SplitSource(None, root)
    if explicit is not None:
        return SplitSource(Path(explicit), root)
    if root is None:  # one's own train folder (no --data): val came from it, nothing else is known
        if split == "test":
            raise UserError(f"data.test: the run was given no test folder (train: {data.train}); give --split FOLDER")
        return SplitSource(None, None)
    has_train = data.train is not None or (root / "train").is_dir()
    folder = split_folder(root, split)
    if has_train and (folder is not None or split == "val"):  # no val/: training took val from train
        return SplitSource(None, root)
    if folder is not None:
        return SplitSource(folder, root)
    if has_train:
        raise missing_split_error(data, split, [], hint="; give --split FOLDER, or --data a dataset with one")
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
        return replace(
            train,
            ids=[train.ids[i] for i in index],
            targets=[train.targets[i] for i in index],
            array=train.array[index] if train.array is not None else None,
        )

    return part(keep), replace(part(val_idx), from_train=True)


def folder_of_run_classes(folder: str | os.PathLike, classes: list[str]) -> Split:
    """An image folder to predict or score with a run: class folders (any of the run's
    ``classes``, labels are their indices there) or a flat folder of images (targets -1).
    Ids are relative to ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder {folder}: not found")
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    subdirs = [p for p in entries if p.is_dir()]
    images = sorted(p.name for p in entries if p.is_file() and p.name.lower().endswith(IMAGE_EXTENSIONS))
    if images and subdirs:
        raise UserError(
            f"image folder {folder}: holds both images and subfolders; expected either "
            f"<class>/<image> folders (labelled) or only images (unlabelled)"
        )
    if images:
        return Split(ids=images, targets=[-1] * len(images), classes=list(classes), root=str(folder))
    samples, found = scan_image_folder(folder)
    unknown = [c for c in found if c not in classes]
    if unknown:
        raise UserError(
            f"image folder {folder}: class folders {unknown} are not classes of the run "
            f"(known: {', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''})"
        )
    index = {name: classes.index(name) for name in found}
    return Split(
        ids=[rel for rel, _ in samples],
        targets=[index[found[c]] for _, c in samples],
        classes=list(classes),
        root=str(folder),
    )
