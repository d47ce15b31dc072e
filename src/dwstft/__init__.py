"""dwstft: Depthwise-STFT separable convolutional networks (Kumawat & Raman, 2020)."""

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
