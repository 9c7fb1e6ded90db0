"""scarce: train image classifiers from scratch when data is scarce."""
__version__ = "0.1.0"
