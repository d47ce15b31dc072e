"""ShuffleNet (v1) for CIFAR (Zhang et al., 2018, "ShuffleNet: An Extremely Efficient
Convolutional Neural Network for Mobile Devices").

Variant: groups g = 2 at scale 1.0: a 3×3 stem conv to 24 channels, three stages of
4 / 8 / 4 ShuffleNet units with 200 / 400 / 800 output channels, then global average
pooling and a linear classifier (800 features). A unit is a grouped 1×1 conv + BN + ReLU,
a channel shuffle, a 3×3 depthwise conv + BN, a grouped 1×1 conv + BN, with bottleneck
width a quarter of the unit's output; a stride-1 unit adds the identity, the stride-2
unit that opens each stage concatenates a 3×3 average-pooled shortcut. As in the paper,
the first 1×1 conv of the first stage is not grouped (its input has only 24 channels).

CIFAR adaptation: the stem's stride is 2 → 1 and its 3×3 max-pool is removed (a 32×32
image cannot afford the ImageNet model's 32× downsampling); the three stride-2 stage
openings are kept, so a 32×32 input ends at an 800 × 4×4 map. Parameter counts do not
depend on strides: 932,848 in the conv body, 1,012,948 with a 100-class head (Table 2
of Kumawat & Raman, 2020: 1.05M, 800 features).

``shufflenet_g3`` is the network behind Table 2's CIFAR-100 ShuffleNet number (70.06 =
100 − the 29.94 top-1 error of weiaicunzai/pytorch-cifar100, models/shufflenet.py): the
same CIFAR stem and stages at g = 3 (240 / 480 / 960, 960 features), and, as that code
builds it, every 1×1 conv grouped (its stage-2 exception never fires) and every conv with
a bias: 1,012,108 parameters with a 100-class head (its README: 1.0M).
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from dwstft.models.base import ImageClassifier
from dwstft.models.common import check_classifier_args, check_width_mult, conv_bn, init_weights
from dwstft.models.registry import PaperReference, register_model

# Stage output channels at scale 1.0 for each group count, the paper's Table 1.
STAGE_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
STAGE_REPEATS = (4, 8, 4)
STEM_CHANNELS = 24


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups: (N, C, H, W) → (N, C, H, W).

    Output channel ``j * groups + g`` is input channel ``g * (C // groups) + j``, so every
    group of the next grouped conv sees channels from every group of the previous one.
    """
    # No Python branch on the shape, so torch.fx.symbolic_trace can record it; a channel
    # count not divisible by ``groups`` fails in ``unflatten``.
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


class ShuffleUnit(nn.Module):
    """ShuffleNet unit: (N, in_chans, H, W) → (N, out_chans, H/s, W/s).

    ``first_groups`` groups the compression 1×1 and the shuffle after it, ``groups`` the
    expansion 1×1; ``bias`` gives the three convolutions a bias. With stride 2 the residual
    branch produces ``out_chans - in_chans`` channels and is concatenated with the
    average-pooled input; with stride 1 it is added to the input.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        stride: int,
        groups: int,
        first_groups: int,
        bias: bool = False,
    ) -> None:
        super().__init__()
        mid = out_chans // 4
        branch_out = out_chans - in_chans if stride == 2 else out_chans
        self.first_groups = first_groups
        self.compress = nn.Sequential(
            *conv_bn(in_chans, mid, 1, groups=first_groups, bias=bias), nn.ReLU(inplace=True)
        )
        self.expand = nn.Sequential(
            *conv_bn(mid, mid, 3, stride=stride, groups=mid, bias=bias),
            *conv_bn(mid, branch_out, 1, groups=groups, bias=bias),
        )
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) → (N, out_chans, H/s, W/s)."""
        out = self.expand(channel_shuffle(self.compress(x), self.first_groups))
        if self.shortcut is None:
            return self.relu(x + out)
        return self.relu(torch.cat((self.shortcut(x), out), dim=1))


class ShuffleNet(ImageClassifier):
    """ShuffleNet v1, CIFAR variant: (N, in_chans, 32, 32) → logits (N, num_classes).

    ``features`` maps (N, in_chans, H, W) → (N, 800, H/8, W/8) at g = 2, scale 1.0. At
    other scales stage widths are rounded to a multiple of 4·groups (so bottlenecks split
    evenly into groups); the stem stays at 24 channels. ``group_first_unit`` groups the
    first unit's 1×1 compression too (the paper leaves it dense; weiaicunzai's code does
    not); ``conv_bias`` gives every convolution a bias (nn.Conv2d's default, which that
    code keeps; BatchNorm cancels it, so it only adds parameters).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        groups: int = 2,
        width_mult: float = 1.0,
        group_first_unit: bool = False,
        conv_bias: bool = False,
    ) -> None:
        check_classifier_args(num_classes, in_chans)
        if isinstance(groups, bool) or groups not in STAGE_CHANNELS:
            expected = sorted(STAGE_CHANNELS)
            raise ValueError(f"groups must be one of {expected} (default 2), got {groups!r}")
        check_width_mult(width_mult)
        unit = 4 * groups
        widths = [max(1, round(c * width_mult / unit)) * unit for c in STAGE_CHANNELS[groups]]
        if any(out_c <= in_c for in_c, out_c in pairwise((STEM_CHANNELS, *widths))):
            raise ValueError(
                f"width_mult must give stage widths increasing from {STEM_CHANNELS} "
                f"(e.g. 1.0), got {width_mult!r} → widths {widths} at groups={groups}"
            )
        super().__init__(widths[-1], num_classes)
        layers: list[nn.Module] = [
            *conv_bn(in_chans, STEM_CHANNELS, 3, bias=conv_bias),
            nn.ReLU(inplace=True),
        ]
        in_c = STEM_CHANNELS
        for stage, (out_c, repeats) in enumerate(zip(widths, STAGE_REPEATS, strict=True)):
            for i in range(repeats):
                dense = stage == 0 and i == 0 and not group_first_unit
                first_groups = 1 if dense else groups
                stride = 2 if i == 0 else 1
                layers.append(ShuffleUnit(in_c, out_c, stride, groups, first_groups, conv_bias))
                in_c = out_c
        self.features = nn.Sequential(*layers)
        init_weights(self)


@register_model(paper=PaperReference(params_m=1.05, features=800, cifar10=90.80, cifar100=70.06))
def shufflenet(num_classes: int = 10, in_chans: int = 3, **kwargs) -> ShuffleNet:
    """ShuffleNet v1, g = 2, scale 1.0, CIFAR stem: 1.01M parameters at 100 classes."""
    return ShuffleNet(num_classes=num_classes, in_chans=in_chans, **kwargs)


def shufflenet_g3(num_classes: int = 10, in_chans: int = 3, **kwargs) -> ShuffleNet:
    """ShuffleNet v1 as weiaicunzai/pytorch-cifar100 builds it (the source of Table 2's
    CIFAR-100 ShuffleNet number): g = 3, 960 features, every 1×1 grouped, biased convs;
    1.01M parameters at 100 classes."""
    return ShuffleNet(num_classes=num_classes, in_chans=in_chans, **{**G3_OPTIONS, **kwargs})


#: What ``shufflenet_g3`` changes in ShuffleNet's defaults.
G3_OPTIONS: dict[str, object] = {"groups": 3, "group_first_unit": True, "conv_bias": True}
shufflenet_g3.model_options = {"groups": 3, "width_mult": 1.0, **G3_OPTIONS}
register_model(
    shufflenet_g3,
    paper=PaperReference(params_m=1.05, features=800, cifar10=90.80, cifar100=70.06),
)
