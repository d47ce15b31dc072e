"""Model registry and every registered network (importing a module registers its models)."""

from dwstft.models import mobilenet, mobilenetv2, shufflenet, shufflenetv2  # noqa: F401
from dwstft.models.registry import (
    PaperReference,
    create_model,
    list_models,
    paper_reference,
    register_model,
)

__all__ = ["PaperReference", "create_model", "list_models", "paper_reference", "register_model"]
