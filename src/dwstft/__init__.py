"""dwstft: Depthwise-STFT separable convolutional networks (Kumawat & Raman, 2020)."""

from dwstft.basis import FREQUENCIES, stft_basis
from dwstft.functional import depthwise_stft, fold_weight, stft_separable
from dwstft.layers import DepthwiseSTFT, DepthwiseSTFTSeparable
from dwstft.models import create_model, list_models, register_model

__all__ = [
    "FREQUENCIES",
    "DepthwiseSTFT",
    "DepthwiseSTFTSeparable",
    "create_model",
    "depthwise_stft",
    "fold_weight",
    "list_models",
    "register_model",
    "stft_basis",
    "stft_separable",
]
__version__ = "0.1.0"
