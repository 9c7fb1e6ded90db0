"""timm models by name, and the psi + g head of the cosine losses."""
from scarce.models.factory import backbone_of, create_model

__all__ = ["backbone_of", "create_model"]
