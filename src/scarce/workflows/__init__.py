"""Workflows: sequences of training, prediction and voting runs (the paper's Table 1 ensemble)."""
