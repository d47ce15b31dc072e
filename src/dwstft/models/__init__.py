"""Model registry and every registered network (importing a module registers its models)."""

from dwstft.models import (  # noqa: F401  (importing registers the models)
    mobilenet,
    mobilenetv2,
    relpu,
    shufflenet,
    shufflenetv2,
    stftnet,
    video,
)
from dwstft.models.features import FeatureExtractor, FeatureInfo, FeatureInfoList
from dwstft.models.registry import (
    PaperReference,
    create_model,
    list_models,
    model_options,
    paper_reference,
    register_model,
)

__all__ = [
    "FeatureExtractor",
    "FeatureInfo",
    "FeatureInfoList",
    "PaperReference",
    "create_model",
    "list_models",
    "model_options",
    "paper_reference",
    "register_model",
]
