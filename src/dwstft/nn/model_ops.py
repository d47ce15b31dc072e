"""What acts on every Depthwise-STFT layer inside a model: ``set_impl`` (the execution path
of every separable layer, 1-D, 2-D and 3-D) and ``fold_model`` (every foldable 2-D layer
replaced by its ``.fold()`` convolution)."""

from __future__ import annotations

import copy

from torch import nn

from dwstft.nn.functional import IMPLS_ND, check_impl, impls
from dwstft.nn.layers import DepthwiseSTFTSeparable, _STFTSeparableNd
from dwstft.nn.multiscale import MultiScaleSTFTSeparable


def set_impl(module: nn.Module, impl: str) -> nn.Module:
    """Set the execution path of every Depthwise-STFT separable layer inside ``module``
    (1-D, 2-D and 3-D, the multi-scale layer included; e.g. ``"grouped"`` to count the
    paper's multiply-adds). Returns ``module``.

    Raises:
        ValueError: ``impl`` is no path's name; or it is a 2-D-only path (``"shift"``) and
            ``module`` holds 1-D or 3-D layers, which are named (nothing is changed then).
    """
    check_impl(impl)
    layers = [
        (name, m)
        for name, m in module.named_modules()
        if isinstance(m, (_STFTSeparableNd, MultiScaleSTFTSeparable))
    ]
    refused = [
        f"{name or 'the module'} ({type(m).__name__})"
        for name, m in layers
        if impl not in impls(m.dims)
    ]
    if refused:
        shown = ", ".join(refused[:3]) + (
            f" and {len(refused) - 3} more" if len(refused) > 3 else ""
        )
        raise ValueError(
            f"impl={impl!r} is a 2-D path, but {shown} take one of {IMPLS_ND}; no layer was "
            "changed: pick one of those"
        )
    for _, m in layers:
        m.impl = impl
    return module


#: Layers ``fold_model`` replaces by their ``.fold()`` convolution.
FOLDABLE = (DepthwiseSTFTSeparable, MultiScaleSTFTSeparable)


def fold_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every ``DepthwiseSTFTSeparable`` and
    ``MultiScaleSTFTSeparable`` replaced by its ``.fold()`` ``nn.Conv2d`` (in the same
    train/eval mode). Other modules, ReLPU included (its ReLU sits between the fixed bank
    and the trainable 1×1, so it does not fold), are copied unchanged.

    The copy computes the same function as ``model`` up to float rounding (about 1e-6
    relative in float32); it has more parameters wherever n² > 8 (an n×n kernel per
    input/output channel pair instead of 8 pointwise weights).
    """
    if isinstance(model, FOLDABLE):
        return model.fold().train(model.training)
    folded = copy.deepcopy(model)
    targets = [
        (parent, name, child)
        for parent in folded.modules()
        for name, child in parent.named_children()
        if isinstance(child, FOLDABLE)
    ]
    for parent, name, child in targets:
        setattr(parent, name, child.fold().train(child.training))
    return folded
