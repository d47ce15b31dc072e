import numpy as np
import pytest
import torch
from torch import nn

from dwstft import DepthwiseSTFT, DepthwiseSTFTSeparable
from dwstft.nn.functional import IMPLS
from dwstft.nn.model_ops import set_impl
from dwstft.nn.multiscale import MultiScaleSTFTSeparable, ReLPU
from stft_reference import stft_reference


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize(("c", "f", "n"), [(1, 1, 3), (3, 16, 3), (16, 128, 5), (64, 256, 7)])
def test_table1_parameter_formulas(c, f, n):
    standard = nn.Conv2d(c, f, n, padding=n // 2, bias=False)
    depthwise_separable = nn.Sequential(
        nn.Conv2d(c, c, n, padding=n // 2, groups=c, bias=False), nn.Conv2d(c, f, 1, bias=False)
    )
    stft = DepthwiseSTFTSeparable(c, f, n, bias=False)
    assert n_params(standard) == c * n * n * f
    assert n_params(depthwise_separable) == n * n * c + c * f
    assert n_params(stft) == 8 * c * f
    assert n_params(DepthwiseSTFTSeparable(c, f, n)) == 8 * c * f + f
    assert n_params(DepthwiseSTFT(c, n)) == 0


def test_depthwise_stft_module_matches_reference_and_has_no_state():
    layer = DepthwiseSTFT(3, 5, dtype=torch.float64)
    x = torch.randn(2, 3, 6, 9, dtype=torch.float64)
    np.testing.assert_allclose(layer(x).numpy(), stft_reference(x.numpy(), 5), rtol=0, atol=1e-12)
    state = layer.state_dict()
    assert list(state) == ["_extra_state"] and state["_extra_state"].tolist() == [5]
    assert layer.in_channels == 3 and layer.out_channels == 24 and layer.kernel_size == 5
    assert not any(b.requires_grad for b in layer.buffers())


def test_separable_attributes_and_state_dict():
    layer = DepthwiseSTFTSeparable(4, 10, 5, stride=2)
    assert (layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride) == (4, 10, 5, 2)
    assert layer.pointwise.weight.shape == (10, 32, 1, 1)
    assert set(layer.state_dict()) == {"pointwise.weight", "pointwise.bias", "stft._extra_state"}


def separable_reference(layer: DepthwiseSTFTSeparable, x: torch.Tensor) -> np.ndarray:
    """Eq. 2 maps from the NumPy reference (zero padding ``pad``, then stride), then the 1×1."""
    pad = layer.stft.padding_px
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, s = layer.kernel_size, layer.stride
    maps = stft_reference(padded, n)[..., n // 2 : padded.shape[2] - n // 2 : s,
                                         n // 2 : padded.shape[3] - n // 2 : s]  # fmt: skip
    w = layer.pointwise.weight.detach()[:, :, 0, 0].numpy()
    out = np.einsum("fk,nkhw->nfhw", w, maps)
    if layer.pointwise.bias is not None:
        out += layer.pointwise.bias.detach().numpy()[:, None, None]
    return out


@pytest.mark.parametrize("n", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("padding", ["same", "valid", 1])
def test_fold_and_eval_match_the_reference(n, stride, bias, padding):
    torch.manual_seed(n + stride)
    layer = DepthwiseSTFTSeparable(3, 7, n, stride, padding, bias=bias, dtype=torch.float64)
    conv = layer.fold()
    assert isinstance(conv, nn.Conv2d)
    assert conv.weight.shape == (7, 3, n, n) and (conv.bias is not None) == bias
    x = torch.randn(2, 3, 11, 10, dtype=torch.float64)
    expected = separable_reference(layer, x)
    with torch.no_grad():
        np.testing.assert_allclose(conv(x).numpy(), expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(layer.eval()(x).numpy(), expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(layer.train()(x).numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("impl", [i for i in IMPLS])
@pytest.mark.parametrize("train", [True, False])
def test_every_impl_gives_the_same_output_and_grads(impl, train):
    torch.manual_seed(0)
    ref = DepthwiseSTFTSeparable(5, 6, 5, impl="grouped", dtype=torch.float64)
    layer = DepthwiseSTFTSeparable(5, 6, 5, impl=impl, dtype=torch.float64)
    layer.load_state_dict(ref.state_dict())
    layer.train(train)
    x = torch.randn(2, 5, 8, 8, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y, y_ref = layer(x), ref(x2)
    torch.testing.assert_close(y, y_ref)
    (y * y_ref.detach()).sum().backward()
    (y_ref * y_ref.detach()).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(layer.pointwise.weight.grad, ref.pointwise.weight.grad)


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("impl", IMPLS)
def test_channels_last_input(n, impl):
    layer = DepthwiseSTFTSeparable(4, 8, n, impl=impl)
    x = torch.randn(2, 4, 9, 9)
    xcl = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    xnchw = x.clone().requires_grad_()
    y, y_ref = layer(xcl), layer(xnchw)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    probe = torch.randn_like(y_ref)
    (y * probe).sum().backward()
    (y_ref * probe).sum().backward()
    torch.testing.assert_close(xcl.grad, xnchw.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("impl", IMPLS)
def test_low_precision_dtypes(dtype, impl):
    torch.manual_seed(1)
    ref = DepthwiseSTFTSeparable(4, 8, 5, dtype=torch.float64)
    layer = DepthwiseSTFTSeparable(4, 8, 5, dtype=dtype, impl=impl)
    layer.load_state_dict({k: v.to(dtype) for k, v in ref.state_dict().items()})
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    x_low = x.to(dtype).requires_grad_()
    y = layer(x_low)
    assert y.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 5e-2
    x64 = x.clone().requires_grad_()
    y_ref = ref(x64)
    assert ((y.double() - y_ref).abs().max() / y_ref.abs().max()) < tol
    probe = torch.randn_like(y_ref)
    (y.double() * probe).sum().backward()
    (y_ref * probe).sum().backward()
    for low, high in (
        (x_low.grad, x64.grad),
        (layer.pointwise.weight.grad, ref.pointwise.weight.grad),
    ):
        assert low.dtype == dtype
        assert ((low.double() - high).abs().max() / high.abs().max()) < 2 * tol


@pytest.mark.parametrize("impl", ["folded", "recompute", "shift", "grouped"])
def test_autocast_bfloat16(impl):
    layer = DepthwiseSTFTSeparable(4, 8, 5, impl=impl)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32 and layer.pointwise.weight.grad.dtype == torch.float32
    torch.testing.assert_close(y.float(), layer(x), rtol=0.05, atol=0.05)


def test_torchscript_script_and_trace():
    layer = DepthwiseSTFTSeparable(3, 8, 5).eval()
    x = torch.randn(2, 3, 9, 11)
    with torch.no_grad():
        expected = layer(x)
        torch.testing.assert_close(torch.jit.script(layer)(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.jit.trace(layer, x)(x), expected)
        stft = DepthwiseSTFT(3, 5).eval()
        torch.testing.assert_close(torch.jit.script(stft)(x), stft(x))


def test_onnx_export_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    layer = DepthwiseSTFTSeparable(3, 8, 5).eval()
    x = torch.randn(2, 3, 9, 11)
    path = tmp_path / "layer.onnx"
    torch.onnx.export(layer, (x,), str(path), dynamo=True, input_names=["x"])
    out = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, layer(x).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.compile
@pytest.mark.slow
def test_torch_compile_fullgraph_matches_eager_across_shapes():
    # The second shape makes Dynamo recompile with dynamic sizes (a regression test for
    # Inductor failing to order the strides of a 5-D view in the shift path).
    torch.manual_seed(0)
    layers = nn.Sequential(DepthwiseSTFTSeparable(3, 4, 3), DepthwiseSTFTSeparable(4, 4, 5))
    compiled = torch.compile(layers, fullgraph=True)
    for shape in [(2, 3, 8, 8), (3, 3, 7, 10)]:
        x = torch.randn(*shape, requires_grad=True)
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
        (lambda: DepthwiseSTFT(3, 4), "kernel_size must be an odd int >= 3, got 4"),
        (lambda: DepthwiseSTFT(3, -3), "kernel_size"),
        (lambda: DepthwiseSTFT(0), "in_channels must be a positive int, got 0"),
        (lambda: DepthwiseSTFT(-2), "in_channels"),
        (lambda: DepthwiseSTFTSeparable(3, 0), "out_channels must be a positive int, got 0"),
        (lambda: DepthwiseSTFTSeparable(3, 8, 2), "kernel_size"),
        (lambda: DepthwiseSTFTSeparable(3, 8, impl="magic"), "impl"),
        (lambda: DepthwiseSTFTSeparable(3, 8, stride=0), "stride"),
        (lambda: DepthwiseSTFTSeparable(3, 8, padding="full"), "padding"),
    ],
)
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_forward_input():
    layer = DepthwiseSTFTSeparable(3, 8)
    with pytest.raises(ValueError, match=r"input has 4 channels .* expected in_channels=3"):
        layer(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match="4-D"):
        layer(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match=r"input has 2 channels"):
        DepthwiseSTFT(3)(torch.randn(1, 2, 8, 8))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("impl", IMPLS)
def test_cuda_matches_cpu(impl, monkeypatch):
    # Full float32 on the GPU: TF32 convolutions (cuDNN's default) differ by ~1e-3.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    layer = DepthwiseSTFTSeparable(4, 8, 5, impl=impl)
    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    y = layer(x)
    y.square().sum().backward()
    gpu = DepthwiseSTFTSeparable(4, 8, 5, impl=impl, device="cuda")
    gpu.load_state_dict(layer.state_dict())
    xg = x.detach().cuda().requires_grad_()
    yg = gpu(xg)
    yg.square().sum().backward()
    torch.testing.assert_close(yg.cpu(), y, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(xg.grad.cpu(), x.grad, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("train", [True, False])
def test_multiscale_equals_concat_then_pointwise(impl, train):
    torch.manual_seed(3)
    layer = MultiScaleSTFTSeparable(4, 6, (3, 5), impl=impl, dtype=torch.float64).train(train)
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64, requires_grad=True)
    maps = np.concatenate([stft_reference(x.detach().numpy(), n) for n in (3, 5)], axis=1)
    w = layer.pointwise.weight.detach()[:, :, 0, 0].numpy()
    ref = np.einsum("fk,nkhw->nfhw", w, maps) + layer.pointwise.bias.detach().numpy()[:, None, None]
    y = layer(x)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-9, atol=1e-9)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert n_params(layer) == 8 * 4 * 2 * 6 + 6


def test_multiscale_fold_is_one_conv_of_the_largest_size():
    layer = MultiScaleSTFTSeparable(3, 5, (3, 5, 7), dtype=torch.float64)
    conv = layer.fold()
    assert conv.weight.shape == (5, 3, 7, 7)
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    torch.testing.assert_close(conv(x), layer(x), rtol=0, atol=1e-12)
    scripted = torch.jit.script(layer.eval())
    torch.testing.assert_close(scripted(x), layer(x), rtol=0, atol=1e-12)


def test_relpu_is_relu_between_the_bank_and_the_pointwise():
    layer = ReLPU(3, 4, (3, 5), dtype=torch.float64)
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    maps = np.concatenate([stft_reference(x.numpy(), n) for n in (3, 5)], axis=1)
    w = layer.pointwise.weight.detach()[:, :, 0, 0].numpy()
    ref = np.einsum("fk,nkhw->nfhw", w, np.maximum(maps, 0))
    ref += layer.pointwise.bias.detach().numpy()[:, None, None]
    np.testing.assert_allclose(layer(x).detach().numpy(), ref, rtol=1e-9, atol=1e-12)
    assert n_params(layer) == 8 * 3 * 2 * 4 + 4


def test_set_impl_reaches_every_stft_layer():
    model = nn.Sequential(DepthwiseSTFTSeparable(3, 4), MultiScaleSTFTSeparable(4, 4))
    set_impl(model, "grouped")
    assert [m.impl for m in model] == ["grouped", "grouped"]
    with pytest.raises(ValueError, match="impl"):
        set_impl(model, "nope")
