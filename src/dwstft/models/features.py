"""Multi-scale feature maps of a registered classifier, in timm's conventions.

A *stage* ends at the last module of ``model.features`` before the spatial size shrinks
(and at the last module overall). ``feature_info(model)`` describes the stage ends (a
:class:`FeatureInfoList`, with timm's ``channels()``, ``reduction()``, ``module_name()``
and ``get_dicts()``), ``forward_intermediates`` returns their feature maps, and
:class:`FeatureExtractor` (what ``create_model(name, features_only=True)`` returns) is a
backbone whose forward gives the list of maps. Everything is a static loop over modules,
so ``torch.fx.symbolic_trace`` records it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

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


class FeatureInfoList(list):
    """The stage ends a model (all of them) or a backbone (its ``out_indices``) describes:
    a list of :class:`FeatureInfo`, indexed, measured and iterated as a list, with the
    accessors of timm's ``FeatureInfo``.

    Attributes: ``stages``, every stage end of the model; ``out_indices``, the stage
    numbers this list holds, in order. The accessors' ``idx`` follows timm: None gives
    one value per entry of this list (for a backbone, per returned map, shallow to deep);
    an int or a sequence of ints gives those stage numbers of the model (negative counts
    from the end), whether the list holds them or not.
    """

    def __init__(
        self, stages: Sequence[FeatureInfo], out_indices: Sequence[int] | None = None
    ) -> None:
        self.stages = tuple(stages)
        self.out_indices = tuple(range(len(self.stages)) if out_indices is None else out_indices)
        super().__init__(self.stages[i] for i in self.out_indices)

    def _stage(self, idx: object) -> FeatureInfo:
        count = len(self.stages)
        if isinstance(idx, bool) or not isinstance(idx, int) or not -count <= idx < count:
            raise ValueError(f"idx must be a stage number in [{-count}, {count}), got {idx!r}")
        return self.stages[idx]

    def _entries(self, idx: int | Sequence[int] | None) -> list[FeatureInfo] | FeatureInfo:
        if idx is None:
            return list(self)
        if isinstance(idx, Sequence):
            return [self._stage(i) for i in idx]
        return self._stage(idx)

    def get_dicts(
        self, keys: Sequence[str] | None = None, idx: int | Sequence[int] | None = None
    ) -> list[dict[str, object]] | dict[str, object]:
        """``{"num_chs", "reduction", "module"}`` (or only ``keys``) per entry (idx None),
        per stage number in ``idx`` (a list), or of one stage (an int)."""
        names = [f.name for f in fields(FeatureInfo)]
        selected = names if keys is None else list(keys)
        unknown = [k for k in selected if k not in names]
        if unknown:
            raise ValueError(f"keys must be among {names}, got {unknown}")
        entries = self._entries(idx)

        def pick(info: FeatureInfo) -> dict[str, object]:
            return {k: getattr(info, k) for k in selected}

        return [pick(e) for e in entries] if isinstance(entries, list) else pick(entries)

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> list[object] | object:
        """The field ``key`` (``num_chs``, ``reduction`` or ``module``) at ``idx``."""
        picked = self.get_dicts([key], idx)
        return [d[key] for d in picked] if isinstance(picked, list) else picked[key]

    def channels(self, idx: int | Sequence[int] | None = None) -> list[int] | int:
        """Channels of the feature map(s) at ``idx``."""
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> list[int] | int:
        """Input size / feature map size (the total stride) at ``idx``."""
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> list[str] | str:
        """Name of the module whose output is the feature map at ``idx`` (``features.i``)."""
        return self.get("module", idx)


def _in_channels(features: nn.Module) -> int:
    for m in features.modules():
        if isinstance(getattr(m, "in_channels", None), int):
            return m.in_channels
    raise ValueError("cannot tell the model's input channels: no module has in_channels")


@torch.no_grad()
def feature_info(model: nn.Module) -> FeatureInfoList:
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
    info = FeatureInfoList(
        FeatureInfo(channels, PROBE_SIZE // size, f"features.{i}")
        for i, (channels, size, _) in enumerate(shapes)
        if i + 1 == len(shapes) or shapes[i + 1][1] != size
    )
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

    Attributes: ``feature_info`` (a :class:`FeatureInfoList`: one :class:`FeatureInfo` per
    returned map, ``out_indices`` the selected stage numbers).
    Shapes: (N, in_chans, H, W) → [(N, C_s, H / r_s, W / r_s) per selected stage].
    """

    def __init__(self, model: nn.Module, out_indices: int | Sequence[int] | None = None) -> None:
        super().__init__()
        info = feature_info(model)
        stages = select_stages(info, out_indices)
        self.feature_info = FeatureInfoList(info.stages, stages)
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
