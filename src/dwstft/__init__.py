"""dwstft: Depthwise-STFT separable convolutional networks (Kumawat & Raman, 2020).

The public names below are imported on first use (PEP 562), so ``import dwstft`` costs
milliseconds and does not import torch until a name is used: the ``dwstft`` command starts
in its own code, where Ctrl-C is handled, rather than in torch's import.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dwstft.lpq import lpq
    from dwstft.models import create_model, list_models, register_model
    from dwstft.nn.basis import FREQUENCIES, stft_basis
    from dwstft.nn.functional import (
        depthwise_stft,
        depthwise_stft_nd,
        fold_weight,
        stft_separable,
        stft_separable_nd,
    )
    from dwstft.nn.layers import (
        DepthwiseSTFT,
        DepthwiseSTFT1d,
        DepthwiseSTFT3d,
        DepthwiseSTFTSeparable,
        DepthwiseSTFTSeparable1d,
        DepthwiseSTFTSeparable3d,
    )
    from dwstft.nn.model_ops import fold_model, set_impl
    from dwstft.nn.multiscale import MultiScaleSTFTSeparable, ReLPU

#: Each public name and the module that defines it.
_SOURCES = {
    "FREQUENCIES": "dwstft.nn.basis",
    "stft_basis": "dwstft.nn.basis",
    "depthwise_stft": "dwstft.nn.functional",
    "fold_weight": "dwstft.nn.functional",
    "stft_separable": "dwstft.nn.functional",
    "depthwise_stft_nd": "dwstft.nn.functional",
    "stft_separable_nd": "dwstft.nn.functional",
    "DepthwiseSTFT": "dwstft.nn.layers",
    "DepthwiseSTFTSeparable": "dwstft.nn.layers",
    "DepthwiseSTFT1d": "dwstft.nn.layers",
    "DepthwiseSTFT3d": "dwstft.nn.layers",
    "DepthwiseSTFTSeparable1d": "dwstft.nn.layers",
    "DepthwiseSTFTSeparable3d": "dwstft.nn.layers",
    "MultiScaleSTFTSeparable": "dwstft.nn.multiscale",
    "ReLPU": "dwstft.nn.multiscale",
    "fold_model": "dwstft.nn.model_ops",
    "set_impl": "dwstft.nn.model_ops",
    "lpq": "dwstft.lpq",
    "create_model": "dwstft.models",
    "list_models": "dwstft.models",
    "register_model": "dwstft.models",
}

__all__ = [
    "FREQUENCIES",
    "DepthwiseSTFT",
    "DepthwiseSTFT1d",
    "DepthwiseSTFT3d",
    "DepthwiseSTFTSeparable",
    "DepthwiseSTFTSeparable1d",
    "DepthwiseSTFTSeparable3d",
    "MultiScaleSTFTSeparable",
    "ReLPU",
    "create_model",
    "depthwise_stft",
    "depthwise_stft_nd",
    "fold_model",
    "fold_weight",
    "list_models",
    "lpq",
    "register_model",
    "set_impl",
    "stft_basis",
    "stft_separable",
    "stft_separable_nd",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import the public ``name`` from its module on first use (then it is a plain attribute)."""
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_SOURCES})


class _Package(types.ModuleType):
    """The package's module type: ``dwstft.lpq`` stays the function when the subpackage of
    the same name is imported (the import system would otherwise bind the package there)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SOURCES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
