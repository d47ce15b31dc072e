"""MobileNetV2 for CIFAR (Sandler et al., 2018, "MobileNetV2: Inverted Residuals and
Linear Bottlenecks").

Variant: the original body at width multiplier 1.0: a 3×3 stem conv to 32 channels,
17 inverted-residual blocks (1×1 expansion by t + BN + ReLU6, 3×3 depthwise + BN + ReLU6,
linear 1×1 projection + BN; identity shortcut when stride is 1 and widths match), a 1×1
conv 320 → 1280 + BN + ReLU6, then global average pooling and a linear classifier.

CIFAR adaptation: a 32×32 image cannot afford the ImageNet model's 32× downsampling (it
would end at 1×1), so the first two of its five stride-2 layers, the stem and the first
24-channel block, get stride 1. The remaining 8× downsampling ends a 32×32 input at a
1280 × 4×4 map, the CIFAR counterpart of ImageNet's 7×7 (the ShuffleNets end at 4×4 too;
MobileNet v1 at 2×2, as in the public CIFAR version Table 2 quotes). Parameter counts do
not depend on strides: 2,223,872 in the conv body, 2,351,972 with a 100-class head
(Table 2 of Kumawat & Raman, 2020: 2.36M, 1280 features).
"""

from __future__ import annotations

import torch
from torch import nn

from dwstft.models.base import ImageClassifier
from dwstft.models.common import check_classifier_args, check_width_mult, conv_bn, init_weights
from dwstft.models.registry import PaperReference, register_model

# (expansion t, output channels c, repeats n, first stride s), the paper's Table 2 with the
# CIFAR stride change marked.
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),  # ImageNet: stride 2
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never dropping below 90% of it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_relu6(
    in_chans: int, out_chans: int, kernel_size: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv (no bias) + BN + ReLU6: (N, in_chans, H, W) → (N, out_chans, H/s, W/s)."""
    return nn.Sequential(*conv_bn(in_chans, out_chans, kernel_size, stride, groups, nn.ReLU6))


class InvertedResidual(nn.Module):
    """Expand → depthwise → linear project: (N, in_chans, H, W) → (N, out_chans, H/s, W/s)."""

    def __init__(self, in_chans: int, out_chans: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_chans * expansion
        layers = [conv_bn_relu6(in_chans, hidden, 1)] if expansion != 1 else []
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_chans, 1, bias=False),
            nn.BatchNorm2d(out_chans),
        ]
        self.block = nn.Sequential(*layers)
        self.use_shortcut = stride == 1 and in_chans == out_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) → (N, out_chans, H/s, W/s)."""
        out = self.block(x)
        return x + out if self.use_shortcut else out


class MobileNetV2(ImageClassifier):
    """MobileNetV2, CIFAR variant: (N, in_chans, 32, 32) → logits (N, num_classes).

    ``features`` maps (N, in_chans, H, W) → (N, 1280, H/8, W/8) at width 1.0. Block
    widths are ``make_divisible(c * width_mult)``; the last conv stays 1280 for
    ``width_mult <= 1`` and scales above, as in the original.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width_mult: float = 1.0) -> None:
        check_classifier_args(num_classes, in_chans)
        check_width_mult(width_mult)
        last = make_divisible(LAST_CHANNELS * max(1.0, width_mult))
        super().__init__(last, num_classes)
        in_c = make_divisible(STEM_CHANNELS * width_mult)
        layers: list[nn.Module] = [conv_bn_relu6(in_chans, in_c, 3)]
        for t, c, n, s in STAGES:
            out_c = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(in_c, out_c, s if i == 0 else 1, t))
                in_c = out_c
        layers.append(conv_bn_relu6(in_c, last, 1))
        self.features = nn.Sequential(*layers)
        init_weights(self)


@register_model(paper=PaperReference(params_m=2.36, features=1280, cifar10=93.14, cifar100=68.08))
def mobilenetv2(num_classes: int = 10, in_chans: int = 3, **kwargs) -> MobileNetV2:
    """MobileNetV2, width 1.0, CIFAR strides: 2.35M parameters at 100 classes."""
    return MobileNetV2(num_classes=num_classes, in_chans=in_chans, **kwargs)
