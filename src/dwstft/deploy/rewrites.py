"""Deployment graph: the fastest eval-mode model that computes exactly what a trained model
computes, for export to an inference runtime.

``deployment_model`` takes an eval-mode copy of a model and

1. replaces every Depthwise-STFT separable layer by one of two equivalent forms
   (:mod:`dwstft.deploy.forms`): its folded dense n×n convolution (``layer.fold()``) or
   the fixed bank as a grouped convolution followed by the trainable 1×1, each layer's
   form given, or chosen by timing both in onnxruntime at the layer's input shape, and
   every ReLPU by the same bank, a ReLU and its 1×1;
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
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import fx, nn

from dwstft.deploy.forms import replace_stft_layers
from dwstft.nn.layers import DepthwiseSTFT, DepthwiseSTFTSeparable
from dwstft.nn.multiscale import MultiScaleSTFTSeparable, ReLPU

#: Modules the tracer keeps whole (their forward has checks a symbolic trace cannot run).
_LEAVES = (DepthwiseSTFT, DepthwiseSTFTSeparable, MultiScaleSTFTSeparable, ReLPU)
#: Skip scales outside this range stay explicit (a product of many BN scales could
#: otherwise push activations towards float32's denormal range).
_SCALE_RANGE = (1e-6, 1e6)
_ADDS = (operator.add, torch.add)
_POSITIVE_HOMOGENEOUS = (nn.LeakyReLU, nn.ReLU, nn.MaxPool2d, nn.Identity)


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
