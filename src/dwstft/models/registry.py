"""A name → constructor registry for models, in the style of timm.

Every registered constructor takes ``num_classes`` and ``in_chans`` keyword arguments and
returns an ``nn.Module`` with ``num_classes``, ``forward_features``, ``forward_head`` and
``reset_classifier``. ``register_model`` can also attach the paper's reference figures
(Table 2) so that tables can print ours beside theirs.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

ModelFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class PaperReference:
    """Figures the paper reports for a model (Table 2). ``None`` where it gives none.

    ``params_m`` is in millions of trainable parameters at 100 classes (the paper does not
    say; 100 classes is the larger head), accuracies are in percent.
    """

    params_m: float | None = None
    features: int | None = None
    cifar10: float | None = None
    cifar100: float | None = None


_MODELS: dict[str, ModelFactory] = {}
_PAPER: dict[str, PaperReference] = {}


def register_model(
    fn: ModelFactory | None = None,
    *,
    name: str | None = None,
    paper: PaperReference | None = None,
) -> ModelFactory | Callable[[ModelFactory], ModelFactory]:
    """Register ``fn`` under ``name`` (default: the function's name).

    Usable bare (``@register_model``) or with arguments
    (``@register_model(paper=PaperReference(...))``).
    """

    def decorate(factory: ModelFactory) -> ModelFactory:
        key = name or factory.__name__
        if key in _MODELS:
            raise ValueError(f"model name {key!r} is already registered")
        _MODELS[key] = factory
        if paper is not None:
            _PAPER[key] = paper
        return factory

    return decorate(fn) if fn is not None else decorate


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern: str | None = None) -> list[str]:
    """Names of registered models in natural order (``b8`` before ``b16``), optionally
    filtered by a shell-style pattern."""
    names = sorted(_MODELS, key=_natural_key)
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatch(n, pattern)]


def paper_reference(name: str) -> PaperReference | None:
    """The paper's Table 2 figures for ``name``, or ``None`` if the paper has none."""
    return _PAPER.get(name)


def create_model(name: str, num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """Build a registered model by name.

    Raises:
        ValueError: the name is unknown (the message lists close matches), or
            ``num_classes``/``in_chans`` is not a positive integer.
    """
    if name not in _MODELS:
        close = [n for n in _MODELS if name.split("_")[0] in n] or list_models()
        raise ValueError(f"unknown model {name!r}; expected one of: {', '.join(sorted(close))}")
    for arg, value in (("num_classes", num_classes), ("in_chans", in_chans)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    return _MODELS[name](num_classes=num_classes, in_chans=in_chans, **kwargs)
