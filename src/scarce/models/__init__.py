"""timm models by name, small-input stems, and the psi + g head of the cosine losses."""

from scarce.models.factory import backbone_of, create_model
from scarce.models.small_input import adapt_to_small_input

__all__ = ["adapt_to_small_input", "backbone_of", "create_model"]
