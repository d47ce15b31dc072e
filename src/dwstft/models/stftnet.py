"""STFTNet: the paper's network of Depthwise-STFT separable blocks (Fig. 3, Table 2).

What the paper's text fixes, and this module follows exactly:
- Block 1: a trainable 1×1 bottleneck c → b, Depthwise-STFT with n = 3 and n = 5 on the
  b channels (inception style), concatenation (16b maps), a trainable 1×1 expansion
  16b → f, then BatchNorm and LeakyReLU(0.3).
- Block 2: Block 1 augmented with a skip connection.
- 16 non-downsampling blocks, 2×2 / stride-2 max pooling for downsampling, global average
  pooling, one linear classifier (softmax lives in the loss); pre-logit width f.
- Orthogonal initialisation of every trainable weight.

What the text leaves open is one ``STFTNetSpec`` (defaults: our choices, argued in
docs/reproduction.md): the stem, blocks per stage and hence where the pools go, which
blocks carry the skip, and where the skip joins.

Two readings are registered for every Table 2 row:

- ``stftnet_b{b}_f{f}`` (the default): the text literally, 272·b·f + O(f) parameters, a
  third to a half of the paper's counts.
- ``stftnet_paramfit_b{b}_f{f}``: the simplest reading we found whose count follows the
  paper's (within 1.2% on five of the six rows): every bottleneck is itself a
  Depthwise-STFT separable layer f → b (n = 3), every Block 2 concatenates its input
  with the block's output and mixes them with a 1×1 2f → f, and only the network's first
  block is a Block 1. With a K-class head: 384·b·f + 30·f² + (90 + K)·f + 16·b + K.

Neither is certain; docs/reproduction.md says why.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from dwstft.models.base import ImageClassifier
from dwstft.models.registry import PaperReference, register_model
from dwstft.nn.layers import DepthwiseSTFTSeparable
from dwstft.nn.multiscale import MultiScaleSTFTSeparable, ReLPU

STEMS = ("stft", "conv")
MIXERS = ("stft", "relpu")
BOTTLENECK_LAYERS = ("conv", "stft")
SKIPS = ("add", "concat")
#: n of the Depthwise-STFT bank of an ``"stft"`` bottleneck.
BOTTLENECK_KERNEL_SIZE = 3


@dataclass(frozen=True)
class STFTNetSpec:
    """Everything that shapes an STFTNet.

    Attributes:
        bottleneck: b, channels after each block's 1×1 bottleneck.
        features: f, channels between blocks and the pre-logit width.
        stage_blocks: blocks per stage; a 2×2 max pool sits between consecutive stages.
            The paper fixes the total (16), not the split.
        block2_from: within each stage, blocks at this index and later are Block 2
            (with skip); earlier ones are Block 1. One int for every stage, or a tuple
            with one index per stage (``(1, 0, 0, 0)``: only the first block of the
            network is a Block 1).
        kernel_sizes: the inception branch sizes (paper: 3 and 5).
        negative_slope: of the LeakyReLU (paper: 0.3).
        stem: ``"stft"`` (a Depthwise-STFT separable layer in_chans → f, n = 3) or
            ``"conv"`` (a 3×3 convolution).
        mixer: ``"stft"`` (the paper's layer) or ``"relpu"`` (ReLU between the STFT bank
            and the expansion: the ReLPU-based network of Table 2).
        bottleneck_layer: ``"conv"`` (the text's trainable 1×1 f → b) or ``"stft"`` (a
            Depthwise-STFT separable layer f → b with n = 3: 8·f·b weights).
        skip: how a Block 2 merges its input x with the block's output y: ``"add"``
            (y + x) or ``"concat"`` (a 1×1 convolution 2f → f of [x, y]).
    """

    bottleneck: int
    features: int
    stage_blocks: tuple[int, ...] = (4, 4, 4, 4)
    block2_from: int | tuple[int, ...] = 1
    kernel_sizes: tuple[int, ...] = (3, 5)
    negative_slope: float = 0.3
    stem: str = "stft"
    mixer: str = "stft"
    bottleneck_layer: str = "conv"
    skip: str = "add"

    def __post_init__(self) -> None:
        for name in ("bottleneck", "features"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not self.stage_blocks or any(not isinstance(k, int) or k < 1 for k in self.stage_blocks):
            raise ValueError(
                f"stage_blocks must be positive ints, one per stage, got {self.stage_blocks!r}"
            )
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
        if self.mixer not in MIXERS:
            raise ValueError(f"mixer must be one of {MIXERS}, got {self.mixer!r}")
        if self.bottleneck_layer not in BOTTLENECK_LAYERS:
            expected = BOTTLENECK_LAYERS
            raise ValueError(
                f"bottleneck_layer must be one of {expected}, got {self.bottleneck_layer!r}"
            )
        if self.skip not in SKIPS:
            raise ValueError(f"skip must be one of {SKIPS}, got {self.skip!r}")
        starts = self.block2_from
        if isinstance(starts, int):
            starts = (starts,) * len(self.stage_blocks)
        valid = len(starts) == len(self.stage_blocks) and all(
            isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in starts
        )
        if not valid:
            raise ValueError(
                "block2_from must be an int >= 0 or one such int per stage "
                f"({len(self.stage_blocks)}), got {self.block2_from!r}"
            )

    @property
    def num_blocks(self) -> int:
        return sum(self.stage_blocks)

    def block2_start(self, stage: int) -> int:
        """Index within ``stage`` of its first Block 2."""
        starts = self.block2_from
        return starts if isinstance(starts, int) else starts[stage]


class STFTBlock(nn.Module):
    """Block 1 (``skip=False``) or Block 2 (``skip=True``) of the paper.

    y = mix(bottleneck(x)) with mix = expand(concat_n STFT_n(·)); then
    Block 1: LeakyReLU(BN(y)); Block 2: LeakyReLU(BN(y + x)) with ``merge="add"`` or
    LeakyReLU(BN(merge_conv([x, y]))) with ``merge="concat"`` (a 1×1 2f → f with bias).
    The skip joins before the BN, so "each block is followed by BN and LeakyReLU" holds
    for both blocks. ``bottleneck_layer`` is ``"conv"`` (1×1 f → b) or ``"stft"``
    (a Depthwise-STFT separable layer f → b, n = 3).

    Shapes: (N, f, H, W) → (N, f, H, W).
    """

    def __init__(
        self,
        channels: int,
        bottleneck: int,
        kernel_sizes: tuple[int, ...],
        negative_slope: float,
        skip: bool,
        mixer: str = "stft",
        bottleneck_layer: str = "conv",
        merge: str = "add",
    ) -> None:
        super().__init__()
        self.skip = skip
        if bottleneck_layer == "conv":
            self.bottleneck: nn.Module = nn.Conv2d(channels, bottleneck, 1)
        else:
            self.bottleneck = DepthwiseSTFTSeparable(channels, bottleneck, BOTTLENECK_KERNEL_SIZE)
        mixer_cls = MultiScaleSTFTSeparable if mixer == "stft" else ReLPU
        self.mix = mixer_cls(bottleneck, channels, kernel_sizes)
        concat = skip and merge == "concat"
        self.merge = nn.Conv2d(2 * channels, channels, 1) if concat else None
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mix(self.bottleneck(x))
        if self.merge is not None:
            y = self.merge(torch.cat((x, y), dim=1))
        elif self.skip:
            y = y + x
        return self.act(self.bn(y))


class STFTNet(ImageClassifier):
    """The paper's network (Fig. 3c) as described by an ``STFTNetSpec``.

    Shapes: (N, in_chans, H, W) → logits (N, num_classes); the feature map before pooling
    is (N, f, H / 2^(stages-1), W / 2^(stages-1)).
    """

    # TorchScript cannot compile the list-building property; it is not part of forward.
    __jit_unused_properties__ = ["blocks"]  # noqa: RUF012

    def __init__(self, spec: STFTNetSpec, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__(spec.features, num_classes)
        self.spec = spec
        f = spec.features
        if spec.stem == "stft":
            stem_layer: nn.Module = DepthwiseSTFTSeparable(in_chans, f, 3)
        else:
            stem_layer = nn.Conv2d(in_chans, f, 3, padding=1)
        layers: list[nn.Module] = [
            nn.Sequential(stem_layer, nn.BatchNorm2d(f), nn.LeakyReLU(spec.negative_slope))
        ]
        for stage, count in enumerate(spec.stage_blocks):
            if stage > 0:
                layers.append(nn.MaxPool2d(2, 2))
            for index in range(count):
                layers.append(
                    STFTBlock(
                        f,
                        spec.bottleneck,
                        spec.kernel_sizes,
                        spec.negative_slope,
                        skip=index >= spec.block2_start(stage),
                        mixer=spec.mixer,
                        bottleneck_layer=spec.bottleneck_layer,
                        merge=spec.skip,
                    )
                )
        self.features = nn.Sequential(*layers)
        init_orthogonal(self)

    @property
    def blocks(self) -> list[STFTBlock]:
        """The non-downsampling blocks, in order."""
        return [m for m in self.features if isinstance(m, STFTBlock)]


def init_orthogonal(module: nn.Module) -> None:
    """Orthogonal initialisation (gain 1, as Keras' ``Orthogonal``) of every trainable
    convolution (1-D, 2-D or 3-D) and linear weight; biases zero; BatchNorm at identity."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.orthogonal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


#: Table 2 rows: (b, f) → (params in millions, CIFAR-10 %, CIFAR-100 %).
TABLE2: dict[tuple[int, int], tuple[float, float, float]] = {
    (8, 128): (0.90, 93.16, 70.19),
    (16, 128): (1.30, 93.59, 70.66),
    (32, 128): (2.21, 93.72, 71.08),
    (64, 128): (3.69, 94.07, 71.42),
    (64, 256): (8.21, 94.25, 73.01),
    (64, 384): (14.06, 94.51, 74.39),
}


def stftnet(
    bottleneck: int = 8,
    features: int = 128,
    num_classes: int = 10,
    in_chans: int = 3,
    **spec_overrides: object,
) -> STFTNet:
    """An STFTNet with any (b, f) and spec overrides (e.g. ``stage_blocks=(8, 8)``)."""
    spec = replace(STFTNetSpec(bottleneck, features), **spec_overrides)
    return STFTNet(spec, num_classes=num_classes, in_chans=in_chans)


def spec_options(*fixed: str) -> dict[str, object]:
    """The ``STFTNetSpec`` fields a preset can override, with their defaults (all but
    bottleneck, features and ``fixed``)."""
    return {
        f.name: f.default
        for f in fields(STFTNetSpec)
        if f.name not in ("bottleneck", "features", *fixed)
    }


#: The parameter-matched reading (``stftnet_paramfit_*``): spec fields over the defaults.
PARAMFIT: dict[str, object] = {
    "bottleneck_layer": "stft",
    "skip": "concat",
    "block2_from": (1, 0, 0, 0),
}


def _register_preset(b: int, f: int, reading: str, overrides: dict[str, object]) -> None:
    params_m, c10, c100 = TABLE2[(b, f)]

    def factory(num_classes: int = 10, in_chans: int = 3, **kwargs: object) -> STFTNet:
        return stftnet(b, f, num_classes, in_chans, **{**overrides, **kwargs})

    factory.__doc__ = f"Table 2 row 'Ours (b={b}, f={f})', {reading} reading."
    factory.model_options = {**spec_options(), **overrides}
    register_model(
        factory,
        name=f"stftnet_{'paramfit_' if overrides else ''}b{b}_f{f}",
        paper=PaperReference(params_m=params_m, features=f, cifar10=c10, cifar100=c100),
    )


for _b, _f in TABLE2:
    _register_preset(_b, _f, "text-literal", {})
    _register_preset(_b, _f, "parameter-matched", PARAMFIT)
