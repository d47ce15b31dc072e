"""Multi-scale feature maps of a registered classifier, in timm's conventions.

A *stage* ends at the last module of ``model.features`` before the spatial size shrinks
(and at the last module overall). ``feature_info(model)`` describes the stage ends,
``forward_intermediates`` returns their feature maps, and :class:`FeatureExtractor` (what
``create_model(name, features_only=True)`` returns) is a backbone whose forward gives the
list of maps. Everything is a static loop over modules, so ``torch.fx.symbolic_trace``
records it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

#: Input side used to find where stages end (the CIFAR size every model is built for).
PROBE_SIZE = 32


@dataclass(frozen=True)
class FeatureInfo:
    """One stage end: ``num_chs`` channels, ``reduction`` (input size / map size) and the
    ``module`` name, ``"features.<index>"``."""

    num_chs: int
    reduction: int
    module: str

    @property
    def index(self) -> int:
        """Position of the stage's last module in ``model.features``."""
        return int(self.module.rsplit(".", 1)[1])


def _in_channels(features: nn.Module) -> int:
    for m in features.modules():
        if isinstance(getattr(m, "in_channels", None), int):
            return m.in_channels
    raise ValueError("cannot tell the model's input channels: no module has in_channels")


@torch.no_grad()
def feature_info(model: nn.Module) -> list[FeatureInfo]:
    """The stage ends of ``model.features``, found by one forward pass of a zero image of
    :data:`PROBE_SIZE` pixels in eval mode (BatchNorm statistics are left untouched; the
    model's mode is restored)."""
    cached = getattr(model, "_feature_info", None)
    if cached is not None:
        return cached
    param = next(model.parameters())
    x = torch.zeros(
        1, _in_channels(model.features), PROBE_SIZE, PROBE_SIZE, device=param.device,
        dtype=param.dtype,
    )  # fmt: skip
    was_training = model.training
    model.eval()
    shapes = []
    for module in model.features:
        x = module(x)
        shapes.append(tuple(x.shape[1:]))
    model.train(was_training)
    info = [
        FeatureInfo(channels, PROBE_SIZE // size, f"features.{i}")
        for i, (channels, size, _) in enumerate(shapes)
        if i + 1 == len(shapes) or shapes[i + 1][1] != size
    ]
    model._feature_info = info
    return info


def select_stages(info: Sequence[FeatureInfo], indices: int | Sequence[int] | None) -> list[int]:
    """Stage numbers from timm-style ``indices``: None (all), an int n (the last n) or a
    sequence of stage numbers (negative counts from the end).

    Raises:
        ValueError: an index outside the model's stages.
    """
    count = len(info)
    if indices is None:
        return list(range(count))
    if isinstance(indices, int):
        if not 1 <= indices <= count:
            raise ValueError(f"indices must be in [1, {count}] (the last n stages), got {indices}")
        return list(range(count - indices, count))
    stages = []
    for i in indices:
        if not -count <= i < count:
            raise ValueError(f"stage index {i} is out of range for {count} stages")
        stages.append(i % count)
    return sorted(set(stages))


def forward_intermediates(
    model: nn.Module,
    x: torch.Tensor,
    indices: int | Sequence[int] | None = None,
    stop_early: bool = False,
    intermediates_only: bool = False,
) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
    """Feature maps (N, C_s, H / r_s, W / r_s) at the selected stage ends of ``model``.

    Returns the list of maps if ``intermediates_only``, else (final feature map, maps);
    ``stop_early`` stops after the last selected stage (then the "final" map is that one).
    """
    info = feature_info(model)
    wanted = {info[s].index for s in select_stages(info, indices)}
    last = max(wanted) if (stop_early or intermediates_only) else len(model.features) - 1
    maps = []
    for i, module in enumerate(model.features):
        if i > last:
            break
        x = module(x)
        if i in wanted:
            maps.append(x)
    return maps if intermediates_only else (x, maps)


class FeatureExtractor(nn.Module):
    """A classifier's ``features`` as a backbone: forward returns the feature maps at the
    stages ``out_indices`` (default: all), shallow to deep; the head is dropped.

    Attributes: ``feature_info`` (one :class:`FeatureInfo` per returned map).
    Shapes: (N, in_chans, H, W) → [(N, C_s, H / r_s, W / r_s) per selected stage].
    """

    def __init__(self, model: nn.Module, out_indices: int | Sequence[int] | None = None) -> None:
        super().__init__()
        info = feature_info(model)
        stages = select_stages(info, out_indices)
        self.feature_info = [info[s] for s in stages]
        self._wanted = tuple(f.index for f in self.feature_info)
        self.features = nn.Sequential(*list(model.features)[: max(self._wanted) + 1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, in_chans, H, W) → list of feature maps, one per selected stage."""
        maps = []
        for i, module in enumerate(self.features):
            x = module(x)
            if i in self._wanted:
                maps.append(x)
        return maps
