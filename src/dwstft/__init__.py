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
    from dwstft.basis import FREQUENCIES, stft_basis
    from dwstft.functional import depthwise_stft, fold_weight, stft_separable
    from dwstft.functional_nd import depthwise_stft_nd, stft_separable_nd
    from dwstft.layers import (
        DepthwiseSTFT,
        DepthwiseSTFTSeparable,
        MultiScaleSTFTSeparable,
        ReLPU,
        fold_model,
        set_impl,
    )
    from dwstft.layers_nd import (
        DepthwiseSTFT1d,
        DepthwiseSTFT3d,
        DepthwiseSTFTSeparable1d,
        DepthwiseSTFTSeparable3d,
    )
    from dwstft.lpq import lpq
    from dwstft.models import create_model, list_models, register_model

#: Each public name and the module that defines it.
_SOURCES = {
    "FREQUENCIES": "dwstft.basis",
    "stft_basis": "dwstft.basis",
    "depthwise_stft": "dwstft.functional",
    "fold_weight": "dwstft.functional",
    "stft_separable": "dwstft.functional",
    "depthwise_stft_nd": "dwstft.functional_nd",
    "stft_separable_nd": "dwstft.functional_nd",
    "DepthwiseSTFT": "dwstft.layers",
    "DepthwiseSTFTSeparable": "dwstft.layers",
    "MultiScaleSTFTSeparable": "dwstft.layers",
    "ReLPU": "dwstft.layers",
    "fold_model": "dwstft.layers",
    "set_impl": "dwstft.layers",
    "DepthwiseSTFT1d": "dwstft.layers_nd",
    "DepthwiseSTFT3d": "dwstft.layers_nd",
    "DepthwiseSTFTSeparable1d": "dwstft.layers_nd",
    "DepthwiseSTFTSeparable3d": "dwstft.layers_nd",
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
    """The package's module type: ``dwstft.lpq`` stays the function when the submodule of
    the same name is imported (the import system would otherwise bind the module there)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SOURCES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
