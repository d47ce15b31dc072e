"""ShuffleNet V2 for CIFAR (Ma et al., 2018, "ShuffleNet V2: Practical Guidelines for
Efficient CNN Architecture Design").

Variant: 1.0×: a 3×3 stem conv to 24 channels, three stages of 4 / 8 / 4 units with
116 / 232 / 464 output channels, a 1×1 conv to 1024 + BN + ReLU, then global average
pooling and a linear classifier. A stride-1 unit splits the channels in half, passes one
half through (1×1 conv + BN + ReLU, 3×3 depthwise + BN, 1×1 conv + BN + ReLU), concatenates
it with the untouched half and shuffles the two groups; the stride-2 unit that opens each
stage feeds the whole input to two branches (the one above, and 3×3 depthwise + BN, 1×1
conv + BN + ReLU), each producing half of the output channels, then concatenates and
shuffles.

CIFAR adaptation: the stem's stride is 2 → 1 and its 3×3 max-pool is removed (a 32×32
image cannot afford the ImageNet model's 32× downsampling); the three stride-2 stage
openings are kept, so a 32×32 input ends at a 1024 × 4×4 map. Parameter counts do not
depend on strides: 1,253,604 in the conv body, 1,356,104 with a 100-class head (Table 2
of Kumawat & Raman, 2020: 1.35M, 1024 features).
"""

from __future__ import annotations

import torch
from torch import nn

from dwstft.models.base import ImageClassifier
from dwstft.models.common import check_classifier_args, conv_bn, init_weights
from dwstft.models.registry import PaperReference, register_model
from dwstft.models.shufflenet import channel_shuffle

# Stage output channels and final conv width for each width multiplier, the paper's Table 5.
WIDTHS: dict[float, tuple[int, int, int, int]] = {
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (244, 488, 976, 2048),
}
STAGE_REPEATS = (4, 8, 4)
STEM_CHANNELS = 24


class ShuffleV2Unit(nn.Module):
    """ShuffleNet V2 unit: (N, in_chans, H, W) → (N, out_chans, H/s, W/s).

    With stride 1, ``in_chans == out_chans`` and only half the channels go through the
    branch; with stride 2 both halves of the output are computed from the whole input.
    """

    def __init__(self, in_chans: int, out_chans: int, stride: int) -> None:
        super().__init__()
        half = out_chans // 2
        branch_in = in_chans if stride == 2 else half
        self.stride = stride
        self.branch = nn.Sequential(
            *conv_bn(branch_in, half, 1),
            nn.ReLU(inplace=True),
            *conv_bn(half, half, 3, stride=stride, groups=half),
            *conv_bn(half, half, 1),
            nn.ReLU(inplace=True),
        )
        self.shortcut = (
            nn.Sequential(
                *conv_bn(in_chans, in_chans, 3, stride=stride, groups=in_chans),
                *conv_bn(in_chans, half, 1),
                nn.ReLU(inplace=True),
            )
            if stride == 2
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) → (N, out_chans, H/s, W/s)."""
        if self.stride == 1:
            left, right = x.chunk(2, dim=1)
        else:
            left, right = x, x
        out = torch.cat((self.shortcut(left), self.branch(right)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(ImageClassifier):
    """ShuffleNet V2, CIFAR variant: (N, in_chans, 32, 32) → logits (N, num_classes).

    ``features`` maps (N, in_chans, H, W) → (N, 1024, H/8, W/8) at 1.0× (2048 at 2.0×).
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width_mult: float = 1.0) -> None:
        check_classifier_args(num_classes, in_chans)
        if isinstance(width_mult, bool) or width_mult not in tuple(WIDTHS):
            expected = sorted(WIDTHS)
            raise ValueError(
                f"width_mult must be one of {expected} (default 1.0), got {width_mult!r}"
            )
        *stage_widths, last = WIDTHS[width_mult]
        super().__init__(last, num_classes)
        layers: list[nn.Module] = [*conv_bn(in_chans, STEM_CHANNELS, 3), nn.ReLU(inplace=True)]
        in_c = STEM_CHANNELS
        for out_c, repeats in zip(stage_widths, STAGE_REPEATS, strict=True):
            for i in range(repeats):
                layers.append(ShuffleV2Unit(in_c, out_c, 2 if i == 0 else 1))
                in_c = out_c
        layers += [*conv_bn(in_c, last, 1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        init_weights(self)


@register_model(paper=PaperReference(params_m=1.35, features=1024, cifar10=91.42, cifar100=69.51))
def shufflenetv2(num_classes: int = 10, in_chans: int = 3, **kwargs) -> ShuffleNetV2:
    """ShuffleNet V2 1.0×, CIFAR stem: 1.36M parameters at 100 classes."""
    return ShuffleNetV2(num_classes=num_classes, in_chans=in_chans, **kwargs)
