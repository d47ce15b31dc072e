"""MobileNet (v1) for CIFAR (Howard et al., 2017, "MobileNets").

Variant: the original 28-layer body at width multiplier 1.0: a 3×3 stem conv to 32
channels, then 13 depthwise-separable blocks (3×3 depthwise conv + BN + ReLU, 1×1 pointwise
conv + BN + ReLU) widening 64 → 1024, then global average pooling and a linear classifier.

CIFAR adaptation, two schedules (``downsampling``):

- 16 (default), as the public CIFAR MobileNets do (weiaicunzai/pytorch-cifar100, whose
  CIFAR-100 number Table 2 quotes, and kuangliu/pytorch-cifar): only the stem loses its
  stride; the depthwise convs opening the 128-, 256-, 512- and 1024-channel stages keep
  stride 2, so a 32×32 input ends at a 1024 × 2×2 map (about 46 M MACs).
- 8: the first 128-channel depthwise conv gets stride 1 too, so the map ends at 4×4 like
  the other baselines here (about 176 M MACs); the schedule this package used before.

Parameter counts do not depend on strides: 3,206,976 in the conv body, 3,309,476 with a
100-class head (Table 2 of Kumawat & Raman, 2020: 3.31M, 1024 features). Convolutions have
no bias, as in kuangliu/pytorch-cifar; weiaicunzai/pytorch-cifar100's pointwise convs carry
5,952 biases more, which BatchNorm cancels.
"""

from __future__ import annotations

from torch import nn

from dwstft.models.base import ImageClassifier
from dwstft.models.common import (
    check_classifier_args,
    check_width_mult,
    conv_bn,
    init_weights,
)
from dwstft.models.registry import PaperReference, register_model

# (output channels, stride) of the 13 depthwise-separable blocks, the paper's Table 1 (the
# ImageNet stem's stride 2 is dropped). ``downsampling=8`` sets the second block's stride to 1.
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
STEM_CHANNELS = 32
#: Total stride of ``features`` → index of the block whose stride becomes 1 (None: none).
DOWNSAMPLING: dict[int, int | None] = {16: None, 8: 1}


def conv_bn_relu(
    in_chans: int, out_chans: int, kernel_size: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv (no bias) + BN + ReLU: (N, in_chans, H, W) → (N, out_chans, H/s, W/s)."""
    return nn.Sequential(*conv_bn(in_chans, out_chans, kernel_size, stride, groups, nn.ReLU))


def depthwise_separable(in_chans: int, out_chans: int, stride: int) -> nn.Sequential:
    """3×3 depthwise + 1×1 pointwise block: (N, in_chans, H, W) → (N, out_chans, H/s, W/s)."""
    return nn.Sequential(
        conv_bn_relu(in_chans, in_chans, 3, stride=stride, groups=in_chans),
        conv_bn_relu(in_chans, out_chans, 1),
    )


class MobileNet(ImageClassifier):
    """MobileNet v1, CIFAR variant: (N, in_chans, 32, 32) → logits (N, num_classes).

    ``features`` maps (N, in_chans, H, W) → (N, 1024·width_mult, H/d, W/d) with
    d = ``downsampling`` (16: the public CIFAR versions' strides; 8: the first 128-channel
    block at stride 1). Channel counts are ``max(1, round(c * width_mult))``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        width_mult: float = 1.0,
        downsampling: int = 16,
    ) -> None:
        check_classifier_args(num_classes, in_chans)
        check_width_mult(width_mult)
        if isinstance(downsampling, bool) or downsampling not in DOWNSAMPLING:
            raise ValueError(
                f"downsampling must be one of {sorted(DOWNSAMPLING)} (default 16: ends a "
                f"32×32 image at 2×2), got {downsampling!r}"
            )
        unstrided = DOWNSAMPLING[downsampling]

        def width(c: int) -> int:
            return max(1, round(c * width_mult))

        super().__init__(width(BLOCKS[-1][0]), num_classes)
        layers = [conv_bn_relu(in_chans, width(STEM_CHANNELS), 3)]
        in_c = width(STEM_CHANNELS)
        for index, (out_c, stride) in enumerate(BLOCKS):
            stride = 1 if index == unstrided else stride
            layers.append(depthwise_separable(in_c, width(out_c), stride))
            in_c = width(out_c)
        self.features = nn.Sequential(*layers)
        init_weights(self)


@register_model(paper=PaperReference(params_m=3.31, features=1024, cifar10=91.87, cifar100=65.98))
def mobilenet(num_classes: int = 10, in_chans: int = 3, **kwargs) -> MobileNet:
    """MobileNet v1, width 1.0, the public CIFAR strides (ends at 2×2; ``downsampling=8``:
    at 4×4): 3.31M parameters at 100 classes."""
    return MobileNet(num_classes=num_classes, in_chans=in_chans, **kwargs)
