"""onnxruntime-specific fusion of an exported ONNX graph: ``Conv → Add → activation`` into
one ``com.microsoft.FusedConv`` with the addend as its ``Z`` input.

Why by hand: on x86 onnxruntime first rewrites convolutions into its blocked NCHWc layout
(``ORT_ENABLE_ALL``). That pass fuses a residual ``Add`` into the convolution only when
both addends are already NCHWc, and it fuses only Relu, Sigmoid and Tanh after such a sum;
its own Conv+Add+activation fusion runs after the layout pass and no longer sees a plain
``Conv``. So ``LeakyRelu(Conv(z) + x)`` (STFTNet's Block 2 once its BatchNorm is folded)
runs as a convolution, a layout reorder, an elementwise Add, a LeakyRelu and another
reorder, each a pass over an f-channel map. ``FusedConv(z, W, B, x)`` with
``activation="LeakyRelu"`` is the node onnxruntime's own fusion would produce; the layout
pass turns it into one NCHWc convolution that accumulates ``x`` and applies the activation
in its epilogue.

The written file then needs onnxruntime (the ``com.microsoft`` domain); the plain ONNX
export stays available for other runtimes.
"""

from __future__ import annotations

from typing import Any

#: Activations onnxruntime's FusedConv applies, with the attributes that become its
#: ``activation_params`` and their ONNX defaults.
_ACTIVATIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "Relu": (),
    "Sigmoid": (),
    "Tanh": (),
    "LeakyRelu": (("alpha", 0.01),),
    "HardSigmoid": (("alpha", 0.2), ("beta", 0.5)),
}
MS_DOMAIN = "com.microsoft"
_FLOAT = 1  # onnx.TensorProto.FLOAT


def _float_shape(value_info: Any) -> tuple | None:
    """A float32 value's shape as a tuple of ints and symbolic names (None if the value
    is not float32 or its shape is unknown)."""
    tensor_type = value_info.type.tensor_type
    if tensor_type.elem_type != _FLOAT or not tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_param if d.dim_param else d.dim_value for d in tensor_type.shape.dim)


def fuse_conv_add_activation(model: Any) -> int:
    """Rewrite, in place, every ``Conv → Add → activation`` chain of ``model`` (an
    ``onnx.ModelProto``) into one ``com.microsoft.FusedConv`` whose ``Z`` input is the
    Add's other operand. Returns how many chains were fused.

    A chain qualifies when the Conv (default domain, with a bias) and the Add feed only the
    next node, neither output is a graph output, the Add's operands are float32 of equal,
    known shapes (no broadcast) and the activation is one FusedConv applies
    (``_ACTIVATIONS``).
    """
    import onnx
    from onnx import helper

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    shapes = {
        v.name: _float_shape(v)
        for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    }
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def only_consumer(name: str):
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in outputs else None

    replaced: dict[int, Any] = {}
    removed: set[int] = set()
    for add in graph.node:
        if add.op_type != "Add" or add.domain not in ("", "ai.onnx") or len(add.input) != 2:
            continue
        act = only_consumer(add.output[0])
        if act is None or act.op_type not in _ACTIVATIONS or act.domain not in ("", "ai.onnx"):
            continue
        for conv_out, addend in (add.input, tuple(reversed(add.input))):
            conv = producers.get(conv_out)
            if (
                conv is None
                or id(conv) in removed
                or conv.op_type != "Conv"
                or conv.domain not in ("", "ai.onnx")
                or len(conv.input) != 3
                or not conv.input[2]
                or only_consumer(conv_out) is not add
                or shapes.get(conv_out) is None
                or shapes.get(conv_out) != shapes.get(addend)
            ):
                continue
            attrs = {a.name: helper.get_attribute_value(a) for a in act.attribute}
            params = [
                float(attrs.get(name, default)) for name, default in _ACTIVATIONS[act.op_type]
            ]
            fused = helper.make_node(
                "FusedConv",
                [*conv.input, addend],
                list(act.output),
                name=f"{conv.name or conv.output[0]}_add_{act.op_type.lower()}",
                domain=MS_DOMAIN,
                activation=act.op_type,
            )
            fused.attribute.extend(conv.attribute)
            if params:
                fused.attribute.append(helper.make_attribute("activation_params", params))
            # In the activation's place: every input of the three nodes is computed by then.
            replaced[id(act)] = fused
            removed.update((id(conv), id(add)))
            break
    if not replaced:
        return 0
    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in removed]
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return len(replaced)
