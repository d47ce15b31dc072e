import inspect

import numpy as np
import pytest
import torch
from torch import nn

from dwstft import (
    DepthwiseSTFT1d,
    DepthwiseSTFT3d,
    DepthwiseSTFTSeparable,
    DepthwiseSTFTSeparable1d,
    DepthwiseSTFTSeparable3d,
    MultiScaleSTFTSeparable,
)
from dwstft.nn.basis import stft_basis_nd
from dwstft.nn.functional import IMPLS_ND
from dwstft.nn.model_ops import set_impl
from stft_nd_reference import stft_nd_reference

# (layer class, kernel size, one input's spatial size)
VARIANTS = [
    (DepthwiseSTFTSeparable1d, 3, (11,)),
    (DepthwiseSTFTSeparable1d, 5, (10,)),
    (DepthwiseSTFTSeparable3d, 3, (4, 6, 5)),
    (DepthwiseSTFTSeparable3d, (1, 3, 3), (3, 6, 7)),
    (DepthwiseSTFTSeparable3d, (3, 1, 1), (5, 4, 3)),
    (DepthwiseSTFTSeparable3d, (3, 5, 5), (4, 6, 6)),
]
IDS = ["1d-3", "1d-5", "3d-333", "3d-133", "3d-311", "3d-355"]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    ("make", "maps"),
    [
        (lambda c, f, **kw: DepthwiseSTFTSeparable1d(c, f, 5, **kw), 2),
        (lambda c, f, **kw: DepthwiseSTFTSeparable3d(c, f, 3, **kw), 26),
        (lambda c, f, **kw: DepthwiseSTFTSeparable3d(c, f, (5, 5, 5), **kw), 26),
        (lambda c, f, **kw: DepthwiseSTFTSeparable3d(c, f, (1, 3, 3), **kw), 8),
        (lambda c, f, **kw: DepthwiseSTFTSeparable3d(c, f, (7, 1, 1), **kw), 2),
    ],
)
@pytest.mark.parametrize(("c", "f"), [(1, 1), (3, 16), (32, 64)])
def test_parameter_formulas(make, maps, c, f):
    assert n_params(make(c, f, bias=False)) == maps * c * f
    assert n_params(make(c, f)) == maps * c * f + f


def test_parameters_against_conv3d_and_depthwise_separable():
    c, f, n = 32, 64, 3
    dense = nn.Conv3d(c, f, n, bias=False)
    separable = nn.Sequential(
        nn.Conv3d(c, c, n, groups=c, bias=False), nn.Conv3d(c, f, 1, bias=False)
    )
    stft = DepthwiseSTFTSeparable3d(c, f, n, bias=False)
    assert n_params(dense) == c * n**3 * f == 55296
    assert n_params(separable) == n**3 * c + c * f == 2912
    assert n_params(stft) == 26 * c * f == 53248
    assert n_params(DepthwiseSTFT3d(c, n)) == n_params(DepthwiseSTFT1d(c, 5)) == 0


def test_signatures_mirror_conv_layers():
    for cls in (DepthwiseSTFTSeparable1d, DepthwiseSTFTSeparable3d):
        params = inspect.signature(cls).parameters
        positional = [p for p, v in params.items() if v.kind == v.POSITIONAL_OR_KEYWORD]
        keyword_only = [p for p, v in params.items() if v.kind == v.KEYWORD_ONLY]
        assert positional == ["in_channels", "out_channels", "kernel_size", "stride", "padding"]
        assert keyword_only == [
            "dilation",
            "groups",
            "bias",
            "padding_mode",
            "device",
            "dtype",
            "impl",
        ]
        conv_params = list(inspect.signature(nn.Conv3d).parameters)
        assert set(conv_params) <= set(params)


def test_attributes_like_conv3d():
    layer = DepthwiseSTFTSeparable3d(4, 10, (1, 3, 5), stride=(1, 2, 2))
    assert (layer.in_channels, layer.out_channels) == (4, 10)
    assert layer.kernel_size == (1, 3, 5) and layer.stride == (1, 2, 2)
    assert layer.padding == "same" and layer.dilation == (1, 1, 1) and layer.groups == 1
    assert layer.padding_mode == "zeros" and layer.maps_per_channel == 8
    assert layer.pointwise.weight.shape == (10, 32, 1, 1, 1)
    assert DepthwiseSTFTSeparable3d(2, 3, 3, 1, 1).padding == (1, 1, 1)
    stft = DepthwiseSTFT1d(3, 7)
    assert (stft.in_channels, stft.out_channels, stft.kernel_size) == (3, 6, (7,))


@pytest.mark.parametrize(("cls", "kernel_size", "size"), VARIANTS, ids=IDS)
def test_depthwise_stft_modules_match_reference(cls, kernel_size, size):
    stft_cls = DepthwiseSTFT1d if cls is DepthwiseSTFTSeparable1d else DepthwiseSTFT3d
    layer = stft_cls(3, kernel_size, dtype=torch.float64)
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    ref = stft_nd_reference(x.numpy(), layer.kernel_size)
    np.testing.assert_allclose(layer(x).numpy(), ref, rtol=0, atol=1e-12)
    assert list(layer.state_dict()) == ["_extra_state"]
    assert not any(b.requires_grad for b in layer.buffers())


@pytest.mark.parametrize(("cls", "kernel_size", "size"), VARIANTS, ids=IDS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_fold_is_equivalent(cls, kernel_size, size, stride, bias):
    layer = cls(3, 7, kernel_size, stride, bias=bias, dtype=torch.float64)
    conv = layer.fold()
    assert isinstance(conv, nn.Conv1d if cls is DepthwiseSTFTSeparable1d else nn.Conv3d)
    assert conv.weight.shape == (7, 3, *layer.kernel_size) and (conv.bias is not None) == bias
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    torch.testing.assert_close(conv(x), layer(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("cls", "kernel_size", "size"), VARIANTS, ids=IDS)
@pytest.mark.parametrize("impl", IMPLS_ND)
@pytest.mark.parametrize("train", [True, False])
def test_every_impl_gives_the_same_output_and_grads(cls, kernel_size, size, impl, train):
    torch.manual_seed(0)
    ref = cls(3, 4, kernel_size, impl="grouped", dtype=torch.float64)
    layer = cls(3, 4, kernel_size, impl=impl, dtype=torch.float64).train(train)
    layer.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y, y_ref = layer(x), ref(x2)
    torch.testing.assert_close(y, y_ref)
    (y * y_ref.detach()).sum().backward()
    (y_ref * y_ref.detach()).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(layer.pointwise.weight.grad, ref.pointwise.weight.grad)
    torch.testing.assert_close(layer.pointwise.bias.grad, ref.pointwise.bias.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("impl", IMPLS_ND)
@pytest.mark.parametrize(("cls", "kernel_size", "size"), [VARIANTS[1], VARIANTS[2]], ids=IDS[1:3])
def test_low_precision_dtypes(dtype, impl, cls, kernel_size, size):
    torch.manual_seed(1)
    ref = cls(4, 8, kernel_size, dtype=torch.float64)
    layer = cls(4, 8, kernel_size, dtype=dtype, impl=impl)
    layer.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    y = layer(x.to(dtype).requires_grad_())
    assert y.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 5e-2
    expected = ref(x)
    assert ((y.double() - expected).abs().max() / expected.abs().max()) < tol
    y.float().sum().backward()


@pytest.mark.parametrize("impl", IMPLS_ND)
def test_autocast_bfloat16(impl):
    layer = DepthwiseSTFTSeparable3d(4, 8, 3, impl=impl)
    x = torch.randn(2, 4, 3, 5, 5, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32 and layer.pointwise.weight.grad.dtype == torch.float32
    torch.testing.assert_close(y.float(), layer(x), rtol=0.05, atol=0.05)


def test_kernel_size_is_recorded_in_the_state_dict():
    layer = DepthwiseSTFTSeparable3d(3, 4, (3, 5, 5))
    state = layer.state_dict()
    assert state["stft._extra_state"].tolist() == [3, 5, 5]
    assert state["stft._extra_state"].dtype == torch.int64
    DepthwiseSTFTSeparable3d(3, 4, (3, 5, 5)).load_state_dict(state)
    with pytest.raises(
        RuntimeError, match=r"kernel_size=\(3, 5, 5\).* has kernel_size=\(5, 5, 5\)"
    ):
        DepthwiseSTFTSeparable3d(3, 4, 5).load_state_dict(state)
    del state["stft._extra_state"]  # a state dict from before the size was recorded
    DepthwiseSTFTSeparable3d(3, 4, 5).load_state_dict(state)
    one_d = DepthwiseSTFTSeparable1d(2, 3, 5).state_dict()
    with pytest.raises(RuntimeError, match=r"saved with kernel_size=5, .* has kernel_size=\(7,\)"):
        DepthwiseSTFTSeparable1d(2, 3, 7).load_state_dict(one_d)


@pytest.mark.parametrize("cls", [DepthwiseSTFTSeparable1d, DepthwiseSTFTSeparable3d])
def test_meta_construction_then_to_empty_is_exact(cls):
    with torch.device("meta"):
        layer = cls(3, 4, 5)
    assert layer.stft.basis.device.type == "meta"
    layer.to_empty(device="cpu")
    torch.testing.assert_close(layer.stft.basis, stft_basis_nd(layer.kernel_size), rtol=0, atol=0)
    direct = cls(3, 4, 5, device="meta").to_empty(device="cpu")
    torch.testing.assert_close(direct.stft.basis, layer.stft.basis, rtol=0, atol=0)


def test_dtype_changes_rebuild_the_basis_exactly():
    layer = DepthwiseSTFTSeparable3d(2, 3, 5).bfloat16().double()
    expected = stft_basis_nd((5, 5, 5), dtype=torch.float64)
    torch.testing.assert_close(layer.stft.basis, expected, rtol=0, atol=0)
    layer.stft.basis.zero_()  # even a corrupted buffer is rebuilt by the next _apply
    layer.float()
    torch.testing.assert_close(layer.stft.basis, expected.float(), rtol=0, atol=0)


def test_no_implicit_cache_in_eval():
    layer = DepthwiseSTFTSeparable3d(3, 4, 3).eval()
    x = torch.randn(1, 3, 3, 5, 5)
    with torch.no_grad():
        layer(x)
        layer.pointwise.weight.data.mul_(2.0)  # a .data write bumps no version counter
        fresh = DepthwiseSTFTSeparable3d(3, 4, 3).eval()
        fresh.load_state_dict(layer.state_dict())
        torch.testing.assert_close(layer(x), fresh(x))


@pytest.mark.parametrize(
    ("cls", "kernel_size", "size"), [VARIANTS[1], VARIANTS[2], VARIANTS[3]], ids=IDS[1:4]
)
def test_torchscript_script_and_trace(cls, kernel_size, size):
    layer = cls(3, 8, kernel_size).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = layer(x)
        torch.testing.assert_close(torch.jit.script(layer)(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.jit.trace(layer, x)(x), expected)
        torch.testing.assert_close(torch.jit.script(layer.stft)(x), layer.stft(x))


@pytest.mark.parametrize(("cls", "kernel_size", "size"), [VARIANTS[1], VARIANTS[2]], ids=IDS[1:3])
def test_onnx_export_matches_onnxruntime(tmp_path, cls, kernel_size, size):
    ort = pytest.importorskip("onnxruntime")
    layer = cls(3, 8, kernel_size).eval()
    x = torch.randn(2, 3, *size)
    path = tmp_path / "layer.onnx"
    torch.onnx.export(layer, (x,), str(path), dynamo=True, input_names=["x"])
    out = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, layer(x).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.compile
@pytest.mark.slow
def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    layers = nn.Sequential(
        DepthwiseSTFTSeparable3d(2, 3, 3), DepthwiseSTFTSeparable3d(3, 3, (1, 5, 5))
    )
    compiled = torch.compile(layers)
    x = torch.randn(2, 2, 3, 6, 6, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y, y_ref = compiled(x), layers(x2)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(y.square().sum(), [x, *layers.parameters()])
    grads_ref = torch.autograd.grad(y_ref.square().sum(), [x2, *layers.parameters()])
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: DepthwiseSTFT3d(3, 4), "kernel_size must be"),
        (lambda: DepthwiseSTFT3d(3, (1, 1, 1)), "no dimension of size >= 3"),
        (lambda: DepthwiseSTFT1d(0), "in_channels must be a positive int, got 0"),
        (lambda: DepthwiseSTFTSeparable3d(3, 0), "out_channels must be a positive int, got 0"),
        (lambda: DepthwiseSTFTSeparable1d(3, 8, 2), "kernel_size"),
        (lambda: DepthwiseSTFTSeparable3d(3, 8, impl="shift"), "impl"),
        (lambda: DepthwiseSTFTSeparable3d(3, 8, stride=0), "stride"),
        (lambda: DepthwiseSTFTSeparable3d(3, 8, padding="full"), "padding"),
        (lambda: DepthwiseSTFTSeparable3d(3, 8, dilation=2), "dilation must be 1"),
        (lambda: DepthwiseSTFTSeparable3d(3, 8, groups=3), "groups must be 1"),
        (lambda: DepthwiseSTFTSeparable1d(3, 8, padding_mode="reflect"), "padding_mode"),
        (lambda: DepthwiseSTFTSeparable1d(3, 8, dtype=torch.int64), "floating-point dtype"),
    ],
)
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_conv_defaults_accepted_in_every_form():
    DepthwiseSTFTSeparable3d(3, 8, 3, 1, 1, dilation=(1, 1, 1), groups=1, padding_mode="zeros")
    DepthwiseSTFTSeparable1d(3, 8, 3, dilation=(1,))


@pytest.mark.parametrize("impl", IMPLS_ND)
@pytest.mark.parametrize("train", [True, False])
def test_bad_forward_input(impl, train):
    layer = DepthwiseSTFTSeparable3d(3, 8, impl=impl).train(train)
    with pytest.raises(ValueError, match=r"input has 4 channels .* expected in_channels=3"):
        layer(torch.randn(1, 4, 3, 5, 5))
    with pytest.raises(ValueError, match=r"5-D \(N, C, T, H, W\)"):
        layer(torch.randn(3, 5, 5, 5))
    with pytest.raises(ValueError, match=r"floating-point .* got dtype torch.uint8"):
        layer(torch.zeros(1, 3, 3, 5, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"3-D \(N, C, L\)"):
        DepthwiseSTFTSeparable1d(3, 8, impl=impl).train(train)(torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match=r"got dtype torch\.int32"):
        DepthwiseSTFT1d(3)(torch.zeros(1, 3, 9, dtype=torch.int32))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("impl", IMPLS_ND)
def test_cuda_matches_cpu(impl, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    layer = DepthwiseSTFTSeparable3d(4, 8, (3, 5, 5), impl=impl)
    x = torch.randn(2, 4, 4, 8, 8, requires_grad=True)
    layer(x).square().sum().backward()
    gpu = DepthwiseSTFTSeparable3d(4, 8, (3, 5, 5), impl=impl, device="cuda")
    gpu.load_state_dict(layer.state_dict())
    torch.testing.assert_close(gpu.stft.basis.cpu(), layer.stft.basis, rtol=0, atol=0)
    xg = x.detach().cuda().requires_grad_()
    yg = gpu(xg)
    yg.square().sum().backward()
    torch.testing.assert_close(yg.cpu(), layer(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(xg.grad.cpu(), x.grad, rtol=1e-3, atol=1e-3)


def test_set_impl_reaches_every_nd_layer():
    model = nn.Sequential(DepthwiseSTFTSeparable3d(3, 4), DepthwiseSTFTSeparable1d(4, 4))
    set_impl(model, "grouped")
    assert [m.impl for m in model] == ["grouped", "grouped"]
    with pytest.raises(ValueError, match="impl"):
        set_impl(model, "shift")


def test_set_impl_reaches_every_dimension_and_refuses_shift_without_changing_a_layer():
    model = nn.ModuleDict(
        {
            "one": DepthwiseSTFTSeparable1d(3, 4),
            "two": DepthwiseSTFTSeparable(3, 4),
            "multi": MultiScaleSTFTSeparable(3, 4),
            "three": DepthwiseSTFTSeparable3d(3, 4),
        }
    )
    set_impl(model, "recompute")
    assert {name: m.impl for name, m in model.items()} == dict.fromkeys(model, "recompute")
    with pytest.raises(
        ValueError,
        match=r"^impl='shift' is a 2-D path, but one \(DepthwiseSTFTSeparable1d\), three "
        r"\(DepthwiseSTFTSeparable3d\) take one of \('auto', 'grouped', 'folded', "
        r"'recompute'\); no layer was changed",
    ):
        set_impl(model, "shift")
    assert {name: m.impl for name, m in model.items()} == dict.fromkeys(model, "recompute")
    set_impl(model["two"], "shift")
    assert model["two"].impl == "shift"
