"""A name → constructor registry for models, in the style of timm.

Every registered constructor takes ``num_classes`` and ``in_chans`` keyword arguments and
returns an ``nn.Module`` with ``num_classes``, ``forward_features``, ``forward_head`` and
``reset_classifier``. ``register_model`` can also attach the paper's reference figures
(Table 2) so that tables can print ours beside theirs.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
import typing
from collections.abc import Callable, Sequence
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
        if "create_model" in globals():  # not while this module is still being defined
            document_models()
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


def model_options(name: str) -> dict[str, object]:
    """The keyword arguments model ``name`` takes besides ``num_classes`` and ``in_chans``,
    with their defaults: the factory's own, those of the class it returns when it passes
    ``**kwargs`` on, or its ``model_options`` attribute when it sets one."""
    factory = _factory(name)
    explicit = getattr(factory, "model_options", None)
    if explicit is not None:
        return dict(explicit)
    options: dict[str, object] = {}
    signatures = [inspect.signature(factory)]
    if any(p.kind is p.VAR_KEYWORD for p in signatures[0].parameters.values()):
        returned = typing.get_type_hints(factory).get("return")
        if isinstance(returned, type):
            signatures.append(inspect.signature(returned.__init__))
    for signature in signatures:
        for param in signature.parameters.values():
            if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            if param.name not in ("self", "num_classes", "in_chans"):
                options.setdefault(param.name, param.default)
    return options


def _factory(name: str) -> ModelFactory:
    if name not in _MODELS:
        close = [n for n in _MODELS if name.split("_")[0] in n] or list_models()
        raise ValueError(f"unknown model {name!r}; expected one of: {', '.join(sorted(close))}")
    return _MODELS[name]


def create_model(
    name: str,
    num_classes: int = 10,
    in_chans: int = 3,
    *,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    **kwargs: object,
) -> nn.Module:
    """Build a registered model by name (the registered names and their options are
    listed below, and by ``dwstft models``).

    Args:
        name: a registered name (``list_models()``).
        num_classes: classifier outputs (>= 1).
        in_chans: input channels (>= 1).
        features_only: return a backbone (:class:`dwstft.models.features.FeatureExtractor`)
            whose forward gives the feature maps at the end of each stage, as timm does.
        out_indices: with ``features_only``, which stages (None: all; n: the last n; or
            stage numbers).
        **kwargs: the model's own options (see :func:`model_options`).

    Raises:
        ValueError: the name is unknown (the message lists close matches), an option is
            not one the model takes (the message lists them), or ``num_classes``/
            ``in_chans`` is not a positive integer.
    """
    factory = _factory(name)
    for arg, value in (("num_classes", num_classes), ("in_chans", in_chans)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    options = model_options(name)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        takes = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "no options"
        raise ValueError(
            f"model {name!r} does not take {', '.join(unknown)}; it takes num_classes, "
            f"in_chans, features_only, out_indices and: {takes}"
        )
    if out_indices is not None and not features_only:
        raise ValueError("out_indices applies with features_only=True only")
    model = factory(num_classes=num_classes, in_chans=in_chans, **kwargs)
    if features_only:
        from dwstft.models.features import FeatureExtractor

        return FeatureExtractor(model, out_indices)
    return model


_CREATE_MODEL_DOC = create_model.__doc__ or ""


def document_models() -> None:
    """Rewrite ``create_model.__doc__`` to end with every registered model and its options,
    so that ``help(create_model)`` lists them (run after each registration)."""
    lines = ["", "    Registered models (name: options with defaults):", ""]
    for name in list_models():
        options = ", ".join(f"{k}={v!r}" for k, v in model_options(name).items())
        lines.append(f"    - ``{name}``: {options or '(none)'}")
    create_model.__doc__ = _CREATE_MODEL_DOC + "\n".join(lines) + "\n"
