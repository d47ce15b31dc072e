"""The two equivalent forms of a Depthwise-STFT separable layer in a deployment graph
(``LAYER_FORMS``), and the choice between them by timing both in onnxruntime.

"dense" is the layer's folded n×n convolution (``layer.fold()``); "bank" is the fixed bank
as one grouped convolution followed by the trainable 1×1 (:func:`bank_pointwise`). A ReLPU
becomes the same bank, a ReLU and its 1×1 (:func:`relpu_as_convs`). Each layer's form is
given, or chosen (:func:`choose_layer_forms`) by timing both forms in onnxruntime at the
input shape the layer sees (:mod:`dwstft.deploy.runtime`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dwstft.deploy.runtime import create_session, session_runner, time_runs
from dwstft.nn.layers import DepthwiseSTFT, DepthwiseSTFTSeparable
from dwstft.nn.multiscale import MultiScaleSTFTSeparable, ReLPU

#: The equivalent forms of a Depthwise-STFT separable layer in a deployment graph.
LAYER_FORMS = ("dense", "bank")
#: ``layer_forms`` argument values: one form for every layer, or "auto" (measured).
FORM_CHOICES = ("auto", *LAYER_FORMS)
STFT_LAYERS = (DepthwiseSTFTSeparable, MultiScaleSTFTSeparable)


@torch.no_grad()
def _bank_and_pointwise(
    stfts: list[DepthwiseSTFT],
    pointwise: nn.Conv2d,
    stride: tuple[int, int] | int,
    padding: tuple[int, int] | int,
) -> tuple[nn.Conv2d, nn.Conv2d]:
    """The banks of ``stfts`` (one per neighbourhood size, same input channels) as one
    grouped convolution, and a copy of ``pointwise`` reading its outputs.

    The bank is ``Conv2d(C, 8kC, n_max, groups=C)`` (k sizes; smaller kernels zero-padded
    to n_max and centred): input channel c's maps are outputs ``c*8k + i*8 + m`` (size i,
    map m). ``pointwise`` reads the layers' order, size-major ``i*8C + c*8 + m``.
    """
    weight = pointwise.weight
    channels = stfts[0].in_channels
    sizes = len(stfts)
    maps = 8 * sizes
    n_max = max(stft.basis.shape[-1] for stft in stfts)
    bank = nn.Conv2d(
        channels,
        maps * channels,
        n_max,
        stride,
        padding,
        groups=channels,
        bias=False,
        device=weight.device,
        dtype=weight.dtype,
    )
    kernels = []
    for stft in stfts:
        p = (n_max - stft.basis.shape[-1]) // 2
        kernels.append(F.pad(stft.basis.to(weight.dtype), [p, p, p, p]))
    per_channel = torch.cat(kernels)  # (8k, n_max, n_max), size-major
    bank.weight.copy_(per_channel.repeat(channels, 1, 1).unsqueeze(1))
    mixed = nn.Conv2d(
        maps * channels,
        pointwise.out_channels,
        1,
        bias=pointwise.bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    out = weight.shape[0]
    reordered = weight.reshape(out, sizes, channels, 8).transpose(1, 2)
    mixed.weight.copy_(reordered.reshape(out, maps * channels, 1, 1))
    if mixed.bias is not None:
        mixed.bias.copy_(pointwise.bias)
    return bank, mixed


def bank_pointwise(layer: DepthwiseSTFTSeparable | MultiScaleSTFTSeparable) -> nn.Sequential:
    """The layer as two plain convolutions: the fixed bank as one grouped ``Conv2d(C, 8kC,
    n_max, groups=C)`` (k neighbourhood sizes; smaller kernels zero-padded to n_max and
    centred), then the trainable 1×1 ``Conv2d(8kC, F)`` with the layer's weights in the
    bank's channel order (input channel c's maps are outputs ``c*8k .. c*8k + 8k - 1``).

    Computes the same function as ``layer`` (same stride and padding as ``layer.fold()``).
    Shapes: (N, C, H, W) → (N, F, H_out, W_out).
    """
    dense = layer.fold()
    stfts = list(layer.stfts) if isinstance(layer, MultiScaleSTFTSeparable) else [layer.stft]
    return nn.Sequential(*_bank_and_pointwise(stfts, layer.pointwise, dense.stride, dense.padding))


def relpu_as_convs(layer: ReLPU) -> nn.Module:
    """ReLPU as plain modules: the bank as one grouped convolution (``bank_pointwise``'s),
    ReLU, the trainable 1×1; so that BatchNorm after it folds into the 1×1. ``layer``
    itself if its banks are not all stride 1 with size-preserving padding.
    Shapes: (N, C, H, W) → (N, F, H, W)."""
    stfts = list(layer.stfts)
    if any(s.stride != 1 or s.padding != "same" for s in stfts):
        return layer
    n_max = max(layer.kernel_sizes)
    bank, pointwise = _bank_and_pointwise(stfts, layer.pointwise, 1, n_max // 2)
    return nn.Sequential(bank, nn.ReLU(), pointwise)


def layer_in_form(layer: DepthwiseSTFTSeparable | MultiScaleSTFTSeparable, form: str) -> nn.Module:
    """``layer`` as ``form``: "dense" (``layer.fold()``) or "bank" (``bank_pointwise``)."""
    if form == "dense":
        return layer.fold()
    if form == "bank":
        return bank_pointwise(layer)
    raise ValueError(f"layer form must be one of {LAYER_FORMS}, got {form!r}")


@dataclass(frozen=True)
class LayerSite:
    """Where a Depthwise-STFT separable layer sits: its qualified name, and the shape of
    one input image (C, H, W) it receives."""

    name: str
    layer: nn.Module
    input_size: tuple[int, int, int]


def stft_layer_sites(model: nn.Module, input_size: tuple[int, int, int]) -> list[LayerSite]:
    """Every Depthwise-STFT separable layer of ``model`` (eval mode) with the input shape
    it sees when ``model`` runs on one (C, H, W) image, in forward order."""
    seen: dict[str, tuple[int, int, int]] = {}
    names = {m: n for n, m in model.named_modules() if isinstance(m, STFT_LAYERS)}

    def record(module: nn.Module, args: tuple) -> None:
        seen.setdefault(names[module], tuple(args[0].shape[1:]))

    hooks = [m.register_forward_pre_hook(record) for m in names]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        for hook in hooks:
            hook.remove()
    modules = dict(model.named_modules())
    return [LayerSite(name, modules[name], shape) for name, shape in seen.items()]


def replace_stft_layers(model: nn.Module, forms: Mapping[str, str]) -> nn.Module:
    """A deep copy of ``model`` with each Depthwise-STFT separable layer named in
    ``forms`` replaced by that form (``layer_in_form``; unnamed ones fold to "dense") and
    every ReLPU by plain modules (``relpu_as_convs``)."""

    def plain(module: nn.Module, name: str) -> nn.Module:
        if isinstance(module, ReLPU):
            return relpu_as_convs(module).train(module.training)
        return layer_in_form(module, forms.get(name, "dense")).train(module.training)

    replaced = copy.deepcopy(model)
    kinds = (*STFT_LAYERS, ReLPU)
    if isinstance(replaced, kinds):
        return plain(replaced, "")
    targets = [
        (parent, f"{prefix}.{name}" if prefix else name, name, child)
        for prefix, parent in replaced.named_modules()
        for name, child in parent.named_children()
        if isinstance(child, kinds)
    ]
    for parent, qualified, name, child in targets:
        setattr(parent, name, plain(child, qualified))
    return replaced


@dataclass(frozen=True)
class FormTiming:
    """Seconds per call of each form of one layer site in onnxruntime, per batch size,
    and the form chosen."""

    site: str
    input_size: tuple[int, int, int]
    seconds: dict[str, dict[int, float]]
    chosen: str


#: A form is chosen over "dense" only if it is at least this much faster (geometric mean
#: of its time ratios over the tuning batch sizes), so timing noise does not flip choices.
CHOICE_MARGIN = 0.05
#: Seconds per call by (layer form signature, batch size), for this process: layers of
#: one shape (every block of a stage, the same block in several models) are timed once.
_TIMING_CACHE: dict[tuple, dict[int, float]] = {}


def _conv_chain_onnx(convs: list[nn.Conv2d], input_size: tuple[int, int, int]) -> bytes:
    """A serialised ONNX model applying ``convs`` in sequence to a (N, C, H, W) input."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers, name = [], [], "input"
    for i, conv in enumerate(convs):
        inputs = [name, f"w{i}"]
        initializers.append(numpy_helper.from_array(conv.weight.detach().numpy(), f"w{i}"))
        if conv.bias is not None:
            initializers.append(numpy_helper.from_array(conv.bias.detach().numpy(), f"b{i}"))
            inputs.append(f"b{i}")
        pad_h, pad_w = conv.padding
        nodes.append(
            helper.make_node(
                "Conv",
                inputs,
                [f"y{i}"],
                kernel_shape=list(conv.kernel_size),
                strides=list(conv.stride),
                pads=[pad_h, pad_w, pad_h, pad_w],
                group=conv.groups,
            )
        )
        name = f"y{i}"
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *input_size])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [module] if isinstance(module, nn.Conv2d) else list(module)


def _signature(convs: list[nn.Conv2d], input_size: tuple[int, int, int]) -> tuple:
    """What a layer form's speed depends on: its convolutions' shapes and the input's."""
    return (
        input_size,
        tuple(
            (tuple(c.weight.shape), c.stride, c.padding, c.groups, c.bias is not None)
            for c in convs
        ),
    )


def time_layer_forms(
    layer: nn.Module, input_size: tuple[int, int, int], batches: tuple[int, ...], rounds: int
) -> dict[str, dict[int, float]]:
    """Seconds per call in onnxruntime of each of ``LAYER_FORMS`` of ``layer`` on
    (batch, *input_size) inputs, for every batch size. Shapes timed before in this
    process are not timed again."""
    forms = {form: _convs(layer_in_form(layer, form)) for form in LAYER_FORMS}
    keys = {form: _signature(convs, input_size) for form, convs in forms.items()}
    for batch in batches:
        missing = [f for f in LAYER_FORMS if batch not in _TIMING_CACHE.get(keys[f], {})]
        if not missing:
            continue
        x = torch.randn(batch, *input_size).numpy()
        runs = {
            form: session_runner(create_session(_conv_chain_onnx(forms[form], input_size)), x)
            for form in missing
        }
        calls = 2 if batch > 1 else 20
        for form, seconds in time_runs(runs, rounds=rounds, calls=calls).items():
            _TIMING_CACHE.setdefault(keys[form], {})[batch] = seconds
    return {form: {b: _TIMING_CACHE[keys[form]][b] for b in batches} for form in LAYER_FORMS}


def choose_layer_forms(
    model: nn.Module,
    input_size: tuple[int, int, int],
    batches: tuple[int, ...] = (1, 64),
    rounds: int = 5,
) -> list[FormTiming]:
    """Time both forms of every Depthwise-STFT separable layer of ``model`` at the input
    shape it sees, in onnxruntime, at each batch size; choose per layer the form with the
    lowest geometric-mean time over ``batches`` ("dense" unless another is faster by
    ``CHOICE_MARGIN``)."""
    choices = []
    for site in stft_layer_sites(model, input_size):
        seconds = time_layer_forms(site.layer, site.input_size, batches, rounds)
        ratio = {
            form: math.prod(seconds[form][b] / seconds["dense"][b] for b in batches)
            ** (1 / len(batches))
            for form in LAYER_FORMS
        }
        best = min(LAYER_FORMS, key=ratio.__getitem__)
        chosen = best if ratio[best] < 1.0 - CHOICE_MARGIN else "dense"
        choices.append(FormTiming(site.name, site.input_size, seconds, chosen))
    return choices
