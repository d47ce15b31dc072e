"""Small spatio-temporal classifiers for clips (N, C, T, H, W): the runnable 3-D example.

``video_stft_tiny`` is built from 3-D Depthwise-STFT separable layers (13 frequency points of
each 3×3×3 neighbourhood, 26 fixed maps per channel, then trainable pointwise weights), in
the shape of the paper's Block 2: a 1×1×1 bottleneck f → b, the STFT layer b → f, a skip,
BatchNorm and LeakyReLU(0.3). ``video_conv3d_tiny`` is the same network with every STFT
layer replaced by a learned ``nn.Conv3d`` with the same kernel: 27 instead of 26 weights per
channel pair, so the two have the same parameter budget (the Conv3d one 3.5% more).

Layout (T = 8, 32×32 input): stem (stride 1×2×2) → 8×16×16 → block → pool 2×2×2 →
4×8×8 → block → pool → 2×4×4 → block → global average pool → linear. A 4-D input
(N, C, H, W) is read as one-frame clips, so image tooling (``dwstft models``,
``dwstft bench models``) runs these models too.
"""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

from dwstft.models.base import ImageClassifier
from dwstft.models.registry import register_model
from dwstft.models.stftnet import init_orthogonal
from dwstft.nn.layers import DepthwiseSTFTSeparable3d

MIXERS = ("stft", "conv3d")


def _mixer(kind: str, in_chans: int, out_chans: int, stride: tuple[int, ...] = (1, 1, 1)):
    """3×3×3, size-preserving (at stride 1): the STFT separable layer or a learned Conv3d."""
    if kind == "stft":
        return DepthwiseSTFTSeparable3d(in_chans, out_chans, 3, stride)
    return nn.Conv3d(in_chans, out_chans, 3, stride, padding=1)


class SpatioTemporalBlock(nn.Module):
    """y = LeakyReLU(BN(mix(bottleneck(x)) + x)), mix a 3×3×3 layer b → f.

    Shapes: (N, f, T, H, W) → (N, f, T, H, W).
    """

    def __init__(self, features: int, bottleneck: int, mixer: str, negative_slope: float):
        super().__init__()
        self.bottleneck = nn.Conv3d(features, bottleneck, 1)
        self.mix = _mixer(mixer, bottleneck, features)
        self.bn = nn.BatchNorm3d(features)
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.mix(self.bottleneck(x)) + x))


class SpatioTemporalNet(ImageClassifier):
    """Stem, three blocks with 2×2×2 max pools between them, global pooling, linear head.

    Args:
        mixer: ``"stft"`` (3-D Depthwise-STFT separable layers) or ``"conv3d"``.
        features: f, channels after the stem and between blocks (the pre-logit width).
        bottleneck: b, channels inside each block.

    Shapes: (N, in_chans, T, H, W) → logits (N, num_classes); (N, in_chans, H, W) is read
    as T = 1.
    """

    def __init__(
        self,
        mixer: str = "stft",
        features: int = 32,
        bottleneck: int = 8,
        num_classes: int = 40,
        in_chans: int = 1,
        negative_slope: float = 0.3,
    ) -> None:
        if mixer not in MIXERS:
            raise ValueError(f"mixer must be one of {MIXERS}, got {mixer!r}")
        super().__init__(features, num_classes)
        self.mixer = mixer

        def block() -> SpatioTemporalBlock:
            return SpatioTemporalBlock(features, bottleneck, mixer, negative_slope)

        def pool() -> nn.MaxPool3d:
            return nn.MaxPool3d(2, 2, ceil_mode=True)  # a one-frame clip stays one frame

        self.features = nn.Sequential(
            _mixer(mixer, in_chans, features, stride=(1, 2, 2)),
            nn.BatchNorm3d(features),
            nn.LeakyReLU(negative_slope),
            block(),
            pool(),
            block(),
            pool(),
            block(),
        )
        init_orthogonal(self)  # as STFTNet, the same for both mixers

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) or (N, C, H, W) → (N, f, t, h, w) feature map."""
        if not isinstance(x, torch.fx.Proxy) and x.dim() == 4:
            x = x.unsqueeze(2)  # fx records clips: a traced graph takes (N, C, T, H, W)
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, f, t, h, w) → logits (N, num_classes), or pooled features if pre_logits."""
        x = x.mean(dim=(2, 3, 4))
        return x if pre_logits else self.head(x)


@register_model
def video_stft_tiny(num_classes: int = 40, in_chans: int = 1, **kwargs) -> SpatioTemporalNet:
    """Spatio-temporal STFT network, f = 32, b = 8 (about 23 k parameters at 40 classes)."""
    return SpatioTemporalNet("stft", num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model
def video_conv3d_tiny(num_classes: int = 40, in_chans: int = 1, **kwargs) -> SpatioTemporalNet:
    """The same network with learned 3×3×3 Conv3d kernels (the same parameter budget)."""
    return SpatioTemporalNet("conv3d", num_classes=num_classes, in_chans=in_chans, **kwargs)
