"""Datasets, uint8 transforms and seeded loaders."""

from scarce.data.datasets import ImageDataset, Split, read_image, scan_image_folder, to_mode
from scarce.data.loader import (
    DataBundle,
    build_data,
    build_dataset,
    build_eval_loader,
    build_train_loader,
    set_loader_epoch,
)
from scarce.data.splits import BUILTIN_DATASETS

__all__ = [
    "ImageDataset",
    "Split",
    "read_image",
    "scan_image_folder",
    "to_mode",
    "BUILTIN_DATASETS",
    "DataBundle",
    "build_data",
    "build_dataset",
    "build_eval_loader",
    "build_train_loader",
    "set_loader_epoch",
]
