"""Deployment graph: the fastest eval-mode model that computes exactly what a trained model
computes, for export to an inference runtime.

``deployment_model`` takes an eval-mode copy of a model and

1. replaces every Depthwise-STFT separable layer by one of two equivalent forms
   (``LAYER_FORMS``): its folded dense n×n convolution (``layer.fold()``) or the fixed
   bank as a grouped convolution followed by the trainable 1×1 (``bank_pointwise``),
   each layer's form given, or chosen by timing both in onnxruntime at the layer's input
   shape (``choose_layer_forms``), and every ReLPU by the same bank, a ReLU and its 1×1
   (``relpu_as_convs``);
2. traces the result with ``torch.fx`` and rewrites module patterns:

   - ``Conv2d → BatchNorm2d``: BatchNorm folded into the convolution;
   - ``BatchNorm2d(a + b)`` (Block 2's sum-then-BN): BN's scale and shift folded into
     every addend that is a convolution, the other addend multiplied by BN's per-channel
     scale ``s`` (a ``mul`` by a constant (1, C, 1, 1) tensor);
   - such a skip scale with ``s > 0`` pushed back into the layers that produce the skip
     (through positively homogeneous LeakyReLU/ReLU and max pooling, into convolution
     outputs and earlier skip scales) and divided out of the other layers that read it
     (convolutions are linear in each input channel), so that the block ends in
     ``conv + x → activation``, which onnxruntime fuses into one convolution.

Every rewrite is exact algebra on the eval-mode function; the results differ from the
original only by float rounding (about 1e-6 relative in float32), which the export's
verification bounds. Patterns that are not recognised are left as they are.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from dwstft.nn.layers import DepthwiseSTFT, DepthwiseSTFTSeparable
from dwstft.nn.multiscale import MultiScaleSTFTSeparable, ReLPU

#: The equivalent forms of a Depthwise-STFT separable layer in a deployment graph.
LAYER_FORMS = ("dense", "bank")
#: ``layer_forms`` argument values: one form for every layer, or "auto" (measured).
FORM_CHOICES = ("auto", *LAYER_FORMS)
STFT_LAYERS = (DepthwiseSTFTSeparable, MultiScaleSTFTSeparable)
#: Modules the tracer keeps whole (their forward has checks a symbolic trace cannot run).
_LEAVES = (DepthwiseSTFT, DepthwiseSTFTSeparable, MultiScaleSTFTSeparable, ReLPU)
#: Skip scales outside this range stay explicit (a product of many BN scales could
#: otherwise push activations towards float32's denormal range).
_SCALE_RANGE = (1e-6, 1e6)
_ADDS = (operator.add, torch.add)
_POSITIVE_HOMOGENEOUS = (nn.LeakyReLU, nn.ReLU, nn.MaxPool2d, nn.Identity)


# ----------------------------------------------------------------------------------------
# The two forms of a Depthwise-STFT separable layer


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
    from dwstft.bench.runtime import create_session, session_runner, time_runs

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


# ----------------------------------------------------------------------------------------
# Graph rewrites


class _Tracer(fx.Tracer):
    """``torch.fx`` tracer that keeps the Depthwise-STFT modules and the module classes in
    ``leaves`` whole."""

    def __init__(self, leaves: frozenset[type]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (
            isinstance(m, _LEAVES)
            or type(m) in self.leaves
            or super().is_leaf_module(m, module_qualified_name)
        )


def trace(model: nn.Module) -> fx.GraphModule | None:
    """A ``torch.fx.GraphModule`` of ``model``, or None if its own forward cannot be traced.

    Modules whose forward branches on tensor values or shapes (e.g. a channel shuffle that
    checks its channel count) are kept whole: a symbolic trace that fails inside a module
    is retried with that module's class as a leaf.
    """
    leaves: frozenset[type] = frozenset()
    while True:
        tracer = _Tracer(leaves)
        try:
            graph = tracer.trace(model)
        except fx.proxy.TraceError:
            # The tracer's module stack still holds the modules being traced at the failure.
            inner = next(reversed(tracer.module_stack.values()), ("", None))[0]
            kind = type(model.get_submodule(inner))
            if not inner or kind in leaves:
                return None
            leaves = leaves | {kind}
            continue
        return fx.GraphModule(tracer.root, graph, type(model).__name__)


class _Rewriter:
    """The pattern rewrites of one GraphModule (eval mode); see the module docstring."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.calls: dict[str, int] = {}
        for node in gm.graph.nodes:
            if node.op == "call_module":
                self.calls[node.target] = self.calls.get(node.target, 0) + 1
        self.skip_scales: list[fx.Node] = []
        self._count = 0
        self.counts = Rewrites()

    # helpers -------------------------------------------------------------------------
    def module(self, node: object, kind: type | tuple[type, ...]) -> nn.Module | None:
        """The module ``node`` calls if it is of ``kind`` and called from this node only."""
        if not isinstance(node, fx.Node) or node.op != "call_module":
            return None
        m = self.modules[node.target]
        return m if isinstance(m, kind) and self.calls[node.target] == 1 else None

    def set_module(self, target: str, module: nn.Module) -> None:
        parent_name, _, name = target.rpartition(".")
        setattr(self.modules[parent_name] if parent_name else self.gm, name, module)
        self.modules[target] = module

    def new_constant(self, value: torch.Tensor) -> str:
        name = f"_deploy_scale_{self._count}"
        self._count += 1
        self.gm.register_buffer(name, value)
        return name

    def constant(self, node: fx.Node) -> torch.Tensor | None:
        """The tensor a ``get_attr`` node reads (None for any other node)."""
        if isinstance(node, fx.Node) and node.op == "get_attr":
            value = getattr(self.gm, node.target)
            return value if isinstance(value, torch.Tensor) else None
        return None

    @staticmethod
    def is_add(node: object) -> bool:
        return (
            isinstance(node, fx.Node)
            and node.op == "call_function"
            and node.target in _ADDS
            and len(node.args) == 2
            and not node.kwargs
            and all(isinstance(a, fx.Node) for a in node.args)
        )

    # Conv2d → BatchNorm2d --------------------------------------------------------------
    def fold_conv_bn(self) -> None:
        for node in list(self.gm.graph.nodes):
            bn = self.module(node, nn.BatchNorm2d)
            if bn is None or bn.training or not bn.track_running_stats:
                continue
            source = node.args[0]
            conv = self.module(source, nn.Conv2d)
            if conv is None or len(source.users) != 1:
                continue
            scale, shift = _bn_affine(bn)
            self.set_module(source.target, _affine_conv(conv, scale, shift))
            node.replace_all_uses_with(source)
            self.gm.graph.erase_node(node)
            self.counts.conv_bn += 1

    # BatchNorm2d(a + b) --------------------------------------------------------------
    def fold_sum_bn(self) -> None:
        for node in list(self.gm.graph.nodes):
            bn = self.module(node, nn.BatchNorm2d)
            if bn is None or bn.training or not bn.track_running_stats:
                continue
            total = node.args[0]
            if not self.is_add(total) or len(total.users) != 1:
                continue
            convs = [
                a for a in total.args if self.module(a, nn.Conv2d) is not None and len(a.users) == 1
            ]
            if not convs or total.args[0] is total.args[1]:
                continue
            scale, shift = _bn_affine(bn)
            new_args = []
            for arg in total.args:
                if arg in convs:
                    # BN(a + b) = s·a + s·b + t: the first conv also takes the shift t.
                    conv = self.modules[arg.target]
                    first = arg is convs[0]
                    self.set_module(arg.target, _affine_conv(conv, scale, shift if first else None))
                    new_args.append(arg)
                else:
                    new_args.append(self.scaled(arg, scale, before=total))
            total.args = tuple(new_args)
            node.replace_all_uses_with(total)
            self.gm.graph.erase_node(node)
            self.counts.sum_bn += 1

    def scaled(self, source: fx.Node, scale: torch.Tensor, before: fx.Node) -> fx.Node:
        """A new node ``source * scale`` (scale a (1, C, 1, 1) constant) before ``before``."""
        name = self.new_constant(scale.reshape(1, -1, 1, 1).clone())
        with self.gm.graph.inserting_before(before):
            attr = self.gm.graph.get_attr(name)
            mul = self.gm.graph.call_function(operator.mul, (source, attr))
        self.skip_scales.append(mul)
        return mul

    # skip scales → producers -----------------------------------------------------------
    def absorb_skip_scales(self) -> None:
        order = {n: i for i, n in enumerate(self.gm.graph.nodes)}
        for mul in sorted(self.skip_scales, key=order.__getitem__, reverse=True):
            source, attr = mul.args
            scale = self.constant(attr).reshape(-1)
            low, high = _SCALE_RANGE
            if not (scale.min() >= low and scale.max() <= high):
                continue
            actions = self.plan_scale(source, scale, requester=mul, touched=set())
            if actions is None:
                continue
            for action in actions:
                action()
            mul.replace_all_uses_with(source)
            self.gm.graph.erase_node(mul)
            self.gm.graph.erase_node(attr)
            delattr(self.gm, attr.target)
            self.counts.skip_scales_absorbed += 1

    def plan_scale(
        self, node: fx.Node, scale: torch.Tensor, requester: fx.Node, touched: set[str]
    ) -> list[Callable[[], None]] | None:
        """Actions that make ``node`` output ``scale`` ⊙ (its value) per channel while every
        user but ``requester`` sees the same function as before; None if that is not
        possible. ``scale`` > 0 (positively homogeneous layers pass it through)."""
        actions: list[Callable[[], None]] = []
        for user in node.users:
            if user is requester:
                continue
            undo = self.plan_compensation(user, node, scale, touched)
            if undo is None:
                return None
            actions.append(undo)
        produced = self.plan_production(node, scale, touched)
        return None if produced is None else actions + produced

    def plan_compensation(
        self, user: fx.Node, source: fx.Node, scale: torch.Tensor, touched: set[str]
    ) -> Callable[[], None] | None:
        """Make ``user`` see the same function when ``source`` is multiplied by ``scale``."""
        conv = self.module(user, nn.Conv2d)
        if conv is not None and user.args == (source,) and user.target not in touched:
            touched.add(user.target)
            return lambda: _scale_conv_inputs(conv, 1.0 / scale)
        if user in self.skip_scales and user.args[0] is source:
            attr = user.args[1]
            if attr.target in touched:
                return None
            touched.add(attr.target)
            value = self.constant(attr)
            return lambda: value.div_(scale.reshape(value.shape))
        return None

    def plan_production(
        self, node: fx.Node, scale: torch.Tensor, touched: set[str]
    ) -> list[Callable[[], None]] | None:
        """Actions that multiply what ``node`` computes by ``scale`` (users not adjusted)."""
        conv = self.module(node, nn.Conv2d)
        if conv is not None and node.target not in touched:
            touched.add(node.target)
            return [lambda: _scale_conv_outputs(conv, scale)]
        if self.module(node, _POSITIVE_HOMOGENEOUS) is not None:
            return self.plan_scale(node.args[0], scale, requester=node, touched=touched)
        if node in self.skip_scales:
            attr = node.args[1]
            if attr.target in touched:
                return None
            touched.add(attr.target)
            value = self.constant(attr)
            return [lambda: value.mul_(scale.reshape(value.shape))]
        if self.is_add(node) and node.args[0] is not node.args[1]:
            actions: list[Callable[[], None]] = []
            for arg in node.args:
                part = self.plan_scale(arg, scale, requester=node, touched=touched)
                if part is None:
                    return None
                actions += part
            return actions
        return None

    def finish(self) -> fx.GraphModule:
        self.gm.graph.eliminate_dead_code()
        self.gm.delete_all_unused_submodules()
        self.gm.graph.lint()
        self.gm.recompile()
        return self.gm


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = scale·x + shift per channel: (scale, shift), each (C,)."""
    with torch.no_grad():
        weight = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
        bias = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        scale = weight / torch.sqrt(bn.running_var + bn.eps)
        return scale.clone(), (bias - bn.running_mean * scale).clone()


@torch.no_grad()
def _affine_conv(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor | None) -> nn.Conv2d:
    """A copy of ``conv`` followed by y = scale·y + shift per output channel (no shift if
    None), as one convolution with a bias."""
    fused = copy.deepcopy(conv)
    fused.weight.mul_(scale.reshape(-1, 1, 1, 1))
    bias = conv.bias * scale if conv.bias is not None else torch.zeros_like(scale)
    fused.bias = nn.Parameter(bias + shift if shift is not None else bias)
    return fused


@torch.no_grad()
def _scale_conv_outputs(conv: nn.Conv2d, scale: torch.Tensor) -> None:
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    if conv.bias is not None:
        conv.bias.mul_(scale)


@torch.no_grad()
def _scale_conv_inputs(conv: nn.Conv2d, scale: torch.Tensor) -> None:
    """Multiply the weights that read input channel c by ``scale[c]`` (any ``groups``)."""
    groups = conv.groups
    out, per_group = conv.weight.shape[:2]
    weight = conv.weight.view(groups, out // groups, per_group, *conv.weight.shape[2:])
    weight.mul_(scale.reshape(groups, 1, per_group, 1, 1))


@dataclass
class Rewrites:
    """How many times each rewrite of the module docstring applied."""

    conv_bn: int = 0
    sum_bn: int = 0
    skip_scales_absorbed: int = 0
    traced: bool = True

    def describe(self) -> str:
        if not self.traced:
            return "not traceable by torch.fx: BatchNorm left to the runtime"
        return (
            f"{self.conv_bn} conv+BN folded, {self.sum_bn} sum+BN folded, "
            f"{self.skip_scales_absorbed}/{self.sum_bn} skip scales absorbed"
        )


def fuse_for_inference(model: nn.Module) -> tuple[nn.Module, Rewrites]:
    """Trace ``model`` (eval mode; copied, not modified) and apply the BatchNorm and
    skip-scale rewrites of the module docstring. Returns the rewritten module (a
    GraphModule; the untouched copy if ``model``'s own forward cannot be traced) and what
    was rewritten. The result computes the same function as ``model`` up to float
    rounding."""
    if model.training:
        raise ValueError("fuse_for_inference needs a model in eval mode; call model.eval()")
    copied = copy.deepcopy(model)
    gm = trace(copied)
    if gm is None:
        return copied, Rewrites(traced=False)
    rewriter = _Rewriter(gm)
    rewriter.fold_conv_bn()
    rewriter.fold_sum_bn()
    rewriter.absorb_skip_scales()
    return rewriter.finish(), rewriter.counts


def deployment_model(
    model: nn.Module, forms: Mapping[str, str] | None = None
) -> tuple[nn.Module, Rewrites]:
    """The deployment graph of ``model`` (see the module docstring), in eval mode, and what
    was rewritten.

    ``forms`` maps qualified names of Depthwise-STFT separable layers to a form of
    ``LAYER_FORMS``; layers it does not name become "dense". ``model`` is not modified.
    """
    was_training = model.training
    model.eval()
    try:
        replaced = replace_stft_layers(model, forms or {})
    finally:
        model.train(was_training)
    deployed, rewrites = fuse_for_inference(replaced.eval())
    return deployed.eval(), rewrites
