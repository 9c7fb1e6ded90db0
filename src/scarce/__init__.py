"""scarce: train image classifiers from scratch when data is scarce.

``scarce.train(...)`` and ``scarce.load(...)`` (see :mod:`scarce.api`) are imported on first
use, so ``import scarce`` (and ``scarce --help``) does not import torch.
"""

__version__ = "0.1.0"
__all__ = ["train", "load", "__version__"]


def __getattr__(name: str):
    if name in ("train", "load"):
        from scarce import api

        return getattr(api, name)
    raise AttributeError(f"module 'scarce' has no attribute {name!r}")
