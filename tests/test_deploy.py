"""The deployment graph (dwstft.deploy.forms, dwstft.deploy.rewrites) and its onnxruntime
fusion (dwstft.deploy.ort_fusion).

References: the independent NumPy Eq. 2 (stft_reference.py) for the bank + 1×1 form,
the unmodified PyTorch model for every rewrite, hand-counted rewrite counts of small
networks, and onnxruntime with graph optimisation off for the ONNX fusion."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from dwstft import create_model
from dwstft.deploy.forms import (
    LayerSite,
    bank_pointwise,
    choose_layer_forms,
    relpu_as_convs,
    replace_stft_layers,
    stft_layer_sites,
)
from dwstft.deploy.ort_fusion import fuse_conv_add_activation
from dwstft.deploy.rewrites import deployment_model, fuse_for_inference, trace
from dwstft.deploy.verify import TOLERANCE
from dwstft.models import list_models
from dwstft.models.stftnet import stftnet
from dwstft.nn.layers import DepthwiseSTFTSeparable
from dwstft.nn.multiscale import MultiScaleSTFTSeparable, ReLPU
from stft_reference import stft_reference


def with_batchnorm_statistics(
    model: nn.Module, seed: int = 0, in_chans: int = 3, size: int = 32
) -> nn.Module:
    """Random BN affine parameters (gamma in [0.5, 1.5]) and the running statistics of
    random (4, in_chans, size, size) inputs, so that every BN is far from the identity;
    eval mode."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
            if m.affine:
                with torch.no_grad():
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, in_chans, size, size))
    return model.eval()


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1.0)).item()


def small_stftnet(**spec: object) -> nn.Module:
    """Two stages: Block 1, Block 2, Block 2 | pool | Block 1, Block 2 (three Block 2)."""
    return stftnet(4, 16, 10, 3, stage_blocks=(3, 2), **spec)


# ----------------------------------------------------------------------------------------
# bank + 1×1


def reference_layer(x: torch.Tensor, weight: torch.Tensor, bias, sizes) -> np.ndarray:
    """Eq. 2 maps of every size (NumPy, float64), concatenated size-major, then the 1×1."""
    maps = np.concatenate([stft_reference(x.double().numpy(), n) for n in sizes], axis=1)
    w = weight.detach().double().numpy()[:, :, 0, 0]
    out = np.einsum("oc,nchw->nohw", w, maps)
    return out + bias.detach().double().numpy()[None, :, None, None]


@pytest.mark.parametrize(
    "layer",
    [
        MultiScaleSTFTSeparable(3, 5, (3, 5)),
        MultiScaleSTFTSeparable(2, 4, (5, 3, 7)),
        DepthwiseSTFTSeparable(3, 6, 5),
    ],
    ids=["multiscale-3-5", "multiscale-5-3-7", "single-5"],
)
def test_bank_pointwise_matches_the_numpy_reference(layer):
    torch.manual_seed(0)
    sizes = layer.kernel_sizes if hasattr(layer, "kernel_sizes") else (layer.kernel_size,)
    bank, pointwise = bank_pointwise(layer)
    channels = layer.in_channels
    assert bank.groups == channels and bank.out_channels == 8 * len(sizes) * channels
    assert bank.kernel_size == (max(sizes),) * 2 and pointwise.kernel_size == (1, 1)
    x = torch.randn(2, channels, 9, 11)
    with torch.no_grad():
        got = pointwise(bank(x)).double().numpy()
    expected = reference_layer(x, layer.pointwise.weight, layer.pointwise.bias, sizes)
    assert np.abs(got - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())


def test_relpu_as_convs_matches_the_numpy_reference():
    torch.manual_seed(0)
    layer = ReLPU(3, 5, (3, 5))
    bank, relu, pointwise = relpu_as_convs(layer)
    assert isinstance(relu, nn.ReLU) and bank.groups == 3
    x = torch.randn(2, 3, 7, 9)
    with torch.no_grad():
        got = pointwise(relu(bank(x))).double().numpy()
    maps = np.concatenate([stft_reference(x.double().numpy(), n) for n in (3, 5)], axis=1)
    w = layer.pointwise.weight.detach().double().numpy()[:, :, 0, 0]
    expected = np.einsum("oc,nchw->nohw", w, np.maximum(maps, 0.0))
    expected += layer.pointwise.bias.detach().double().numpy()[None, :, None, None]
    assert np.abs(got - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())


def test_relpu_network_gets_the_same_rewrites():
    model = with_batchnorm_statistics(small_stftnet(mixer="relpu"))
    deployed, rewrites = deployment_model(model)
    assert (rewrites.conv_bn, rewrites.sum_bn, rewrites.skip_scales_absorbed) == (3, 3, 3)
    assert not any(isinstance(m, (ReLPU, nn.BatchNorm2d)) for m in deployed.modules())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert rel_diff(deployed(x), model(x)) < 1e-5


def test_bank_pointwise_keeps_the_stride():
    layer = DepthwiseSTFTSeparable(2, 3, 3, stride=2)
    x = torch.randn(1, 2, 10, 10)
    with torch.no_grad():
        assert rel_diff(nn.Sequential(*bank_pointwise(layer))(x), layer(x)) < 1e-5


# ----------------------------------------------------------------------------------------
# graph rewrites


def test_rewrites_of_a_small_stftnet_counted_by_hand():
    model = with_batchnorm_statistics(small_stftnet())
    deployed, rewrites = deployment_model(model)
    # conv+BN: the stem and the two Block 1; sum+BN: the three Block 2, all absorbed.
    assert (rewrites.conv_bn, rewrites.sum_bn, rewrites.skip_scales_absorbed) == (3, 3, 3)
    kinds = [type(m) for m in deployed.modules()]
    assert nn.BatchNorm2d not in kinds and DepthwiseSTFTSeparable not in kinds
    # No multiplication is left: every skip is a plain add feeding the activation.
    targets = [n.target for n in deployed.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.mul) + sum("mul" in str(t) for t in targets) == 0
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert rel_diff(deployed(x), model(x)) < 1e-5


def test_a_negative_batchnorm_scale_keeps_its_skip_multiplication():
    model = with_batchnorm_statistics(small_stftnet())
    with torch.no_grad():
        model.features[3].bn.weight[0] = -0.7  # the second Block 2 of the first stage
    deployed, rewrites = deployment_model(model)
    assert (rewrites.sum_bn, rewrites.skip_scales_absorbed) == (3, 2)
    muls = [n for n in deployed.graph.nodes if "mul" in str(n.target)]
    assert len(muls) == 1
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert rel_diff(deployed(x), model(x)) < 1e-5


class TwoBranchSum(nn.Module):
    """y = ReLU(BN(conv_a(x) + conv_b(x))) + the input through a 1×1 (no skip scale)."""

    def __init__(self, affine: bool = True) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(3, 6, 3, padding=1)
        self.conv_b = nn.Conv2d(3, 6, 5, padding=2, bias=False)
        self.bn = nn.BatchNorm2d(6, affine=affine)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.conv_a(x) + self.conv_b(x)))


@pytest.mark.parametrize("affine", [True, False])
def test_sum_of_two_convolutions_takes_the_batchnorm_in_both(affine):
    model = with_batchnorm_statistics(TwoBranchSum(affine))
    deployed, rewrites = deployment_model(model)
    assert (rewrites.conv_bn, rewrites.sum_bn, rewrites.skip_scales_absorbed) == (0, 1, 0)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        assert rel_diff(deployed(x), model(x)) < 1e-5


def test_rewrites_leave_the_model_untouched():
    model = with_batchnorm_statistics(small_stftnet())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deployment_model(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_fuse_for_inference_needs_eval_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fuse_for_inference(small_stftnet().train())


class ShapeBranch(nn.Module):
    """A block whose forward branches on its input's shape (torch.fx cannot record it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x) if x.shape[-1] > 1 else x


def test_modules_that_branch_on_shapes_stay_whole():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), ShapeBranch()).eval()
    gm = trace(model)
    leaves = {
        type(gm.get_submodule(n.target)).__name__ for n in gm.graph.nodes if n.op == "call_module"
    }
    assert "ShapeBranch" in leaves
    deployed, rewrites = fuse_for_inference(model)
    assert rewrites.conv_bn == 1
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert rel_diff(deployed(x), model(x)) < TOLERANCE


def test_a_model_whose_own_forward_branches_is_returned_unrewritten():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.shape[1] == 3 else x

    model = Branchy().eval()
    deployed, rewrites = fuse_for_inference(model)
    assert not rewrites.traced and isinstance(deployed.bn, nn.BatchNorm2d)


#: The image classifiers (the 3-D video example models are not deployment targets).
IMAGE_MODELS = [n for n in list_models() if not n.startswith("video_")]


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_registered_model_is_equivalent_after_the_rewrites(name):
    # 16×16 images keep this quick; every model here is fully convolutional.
    model = with_batchnorm_statistics(create_model(name), size=16)
    deployed, rewrites = deployment_model(model)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        # The export's tolerance: deep baselines reach ~1e-5 from reassociated rounding.
        assert rel_diff(deployed(x), model(x)) < TOLERANCE
    assert rewrites.conv_bn + rewrites.sum_bn > 0


def test_bank_form_of_every_layer_is_equivalent():
    model = with_batchnorm_statistics(small_stftnet())
    sites = stft_layer_sites(model, (3, 32, 32))
    assert [s.name for s in sites] == [
        "features.0.0",
        "features.1.mix",
        "features.2.mix",
        "features.3.mix",
        "features.5.mix",
        "features.6.mix",
    ]
    assert isinstance(sites[0], LayerSite) and sites[4].input_size == (4, 16, 16)
    forms = {s.name: "bank" for s in sites}
    replaced = replace_stft_layers(model, forms)
    assert sum(isinstance(m, nn.Sequential) and len(m) == 2 for m in replaced.modules()) >= 6
    deployed, _ = deployment_model(model, forms)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert rel_diff(deployed(x), model(x)) < 1e-5


def test_choose_layer_forms_times_each_shape_in_onnxruntime():
    model = with_batchnorm_statistics(stftnet(2, 16, 10, 3, stage_blocks=(2,)))
    choices = choose_layer_forms(model, (3, 8, 8), batches=(1, 2), rounds=1)
    assert [c.site for c in choices] == ["features.0.0", "features.1.mix", "features.2.mix"]
    for c in choices:
        assert set(c.seconds) == {"dense", "bank"} and c.chosen in ("dense", "bank")
        assert all(set(t) == {1, 2} and min(t.values()) > 0 for t in c.seconds.values())
    # Blocks of one shape are timed once and share the timing.
    assert choices[1].seconds == choices[2].seconds


# ----------------------------------------------------------------------------------------
# onnxruntime FusedConv


def conv_add_graph(act: str, broadcast: bool = False, second_use: bool = False) -> onnx.ModelProto:
    """x → Conv(3×3, 4 → 4, bias) → Add(·, skip or a constant) → act → y [, Conv output]."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
    ]
    addend = "skip"
    if broadcast:
        inits.append(numpy_helper.from_array(np.float32([[[[0.5]]]]), "c"))
        addend = "c"
    attrs = {"alpha": 0.3} if act == "LeakyRelu" else {}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["conv", addend], ["sum"]),
        helper.make_node(act, ["sum"], ["y"], **attrs),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])]
    if second_use:
        outputs.append(helper.make_tensor_value_info("conv", TensorProto.FLOAT, ["N", 4, 6, 6]))
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 4, 6, 6])
        for name in ("x", "skip")
    ]
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run_onnx(model: onnx.ModelProto, x: np.ndarray, skip: np.ndarray, optimize: bool):
    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(["y"], {"x": x, "skip": skip})[0]


@pytest.mark.parametrize("act", ["LeakyRelu", "Relu", "Sigmoid"])
def test_conv_add_activation_becomes_one_fused_conv(act):
    model = conv_add_graph(act)
    x, skip = np.random.default_rng(1).standard_normal((2, 2, 4, 6, 6)).astype(np.float32)
    expected = run_onnx(model, x, skip, optimize=False)
    assert fuse_conv_add_activation(model) == 1
    (node,) = model.graph.node
    assert (node.op_type, node.domain, list(node.input)) == (
        "FusedConv",
        "com.microsoft",
        ["x", "w", "b", "skip"],
    )
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["activation"] == act.encode() and attrs["pads"] == [1, 1, 1, 1]
    if act == "LeakyRelu":
        assert attrs["activation_params"] == pytest.approx([0.3])
    for optimize in (False, True):
        assert np.abs(run_onnx(model, x, skip, optimize) - expected).max() < 1e-5


@pytest.mark.parametrize(
    "model",
    [
        conv_add_graph("LeakyRelu", broadcast=True),
        conv_add_graph("LeakyRelu", second_use=True),
        conv_add_graph("Elu"),
    ],
    ids=["broadcast-add", "conv-output-used-twice", "unsupported-activation"],
)
def test_chains_that_do_not_qualify_stay(model):
    ops = [n.op_type for n in model.graph.node]
    assert fuse_conv_add_activation(model) == 0
    assert [n.op_type for n in model.graph.node] == ops
