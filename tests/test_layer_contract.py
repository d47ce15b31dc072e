"""The module contract PyTorch users rely on, and the patterns that used to give silently
wrong results: meta-device construction, device contexts, ``.data`` writes in eval mode,
Conv2d-style positional arguments, non-float and non-finite inputs, and state dicts saved
with another kernel size. Every case runs on every execution path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dwstft import DepthwiseSTFT, DepthwiseSTFTSeparable, create_model, depthwise_stft
from dwstft.nn.basis import stft_basis
from dwstft.nn.functional import IMPLS, stft_separable
from dwstft.nn.multiscale import MultiScaleSTFTSeparable, ReLPU
from stft_reference import stft_reference

LAYERS = {
    "separable_n3": lambda **kw: DepthwiseSTFTSeparable(4, 6, 3, **kw),
    "separable_n5_stride2": lambda **kw: DepthwiseSTFTSeparable(4, 6, 5, stride=2, **kw),
    "multiscale": lambda **kw: MultiScaleSTFTSeparable(4, 6, (3, 5), **kw),
    "relpu": lambda **kw: ReLPU(4, 6, (3, 5), **kw),
}


@pytest.mark.parametrize("make", LAYERS.values(), ids=LAYERS.keys())
def test_meta_construction_then_to_empty_and_load_is_exact(make):
    torch.manual_seed(0)
    real = make().eval()
    lazy = make(device="meta")
    assert all(t.is_meta for t in (*lazy.parameters(), *lazy.buffers()))
    lazy.to_empty(device="cpu")
    result = lazy.load_state_dict(real.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 4, 9, 8)
    with torch.no_grad():
        assert torch.equal(lazy.eval()(x), real(x))


def test_whole_model_built_under_a_meta_context_loads_exactly():
    torch.manual_seed(0)
    real = create_model("stftnet_b8_f128", num_classes=10).eval()
    with torch.device("meta"):
        lazy = create_model("stftnet_b8_f128", num_classes=10)
    lazy.to_empty(device="cpu")
    lazy.load_state_dict(real.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(lazy.eval()(x), real(x))


def test_a_meta_context_does_not_leak_into_later_layers():
    with torch.device("meta"):
        on_meta = DepthwiseSTFTSeparable(8, 16, 3)
    assert on_meta.stft.basis.is_meta and on_meta.pointwise.weight.is_meta
    later = DepthwiseSTFT(2, 3, dtype=torch.float64)
    assert later.basis.device.type == "cpu"
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64)
    np.testing.assert_allclose(later(x).numpy(), stft_reference(x.numpy(), 3), atol=1e-12)
    assert stft_basis(3).device.type == "cpu"


def test_handed_out_bases_are_copies():
    basis = stft_basis(3, dtype=torch.float64)
    basis.zero_()
    assert stft_basis(3, dtype=torch.float64).abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_casting_rebuilds_the_basis_from_its_definition(dtype):
    layer = DepthwiseSTFTSeparable(2, 3, 5).to(dtype)
    assert torch.equal(layer.stft.basis, stft_basis(5, dtype=torch.float64).to(dtype))


@pytest.mark.parametrize("write", ["mul_", "copy_"])
@pytest.mark.parametrize("make", LAYERS.values(), ids=LAYERS.keys())
def test_eval_output_follows_data_writes(make, write):
    torch.manual_seed(1)
    layer = make(dtype=torch.float64).eval()
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    with torch.no_grad():
        layer(x)
        weight = layer.pointwise.weight
        if write == "mul_":
            weight.data.mul_(2.0)
        else:
            weight.data.copy_(torch.randn_like(weight))
        fresh = make(dtype=torch.float64).eval()
        fresh.load_state_dict(layer.state_dict())
        assert torch.equal(layer(x), fresh(x))
        if hasattr(layer, "fold"):
            torch.testing.assert_close(layer(x), layer.fold()(x), rtol=0, atol=1e-12)


def test_conv2d_positional_order_fails_loudly():
    # nn.Conv2d(in, out, kernel, stride, padding, dilation, groups, bias)
    with pytest.raises(TypeError, match="positional"):
        DepthwiseSTFTSeparable(8, 16, 3, 1, 1, 1, 1, False)
    with pytest.raises(TypeError, match="positional"):
        MultiScaleSTFTSeparable(8, 16, (3, 5), False)


@pytest.mark.parametrize(
    ("option", "value"), [("dilation", 2), ("groups", 4), ("padding_mode", "reflect")]
)
def test_unsupported_conv2d_options_are_refused_by_name(option, value):
    with pytest.raises(ValueError, match=f"{option}={value!r} is not supported"):
        DepthwiseSTFTSeparable(8, 16, 3, **{option: value})


def test_conv2d_keyword_defaults_are_accepted_and_padding_is_positional():
    layer = DepthwiseSTFTSeparable(
        2, 4, 3, 2, 0, dilation=1, groups=1, bias=False, padding_mode="zeros"
    )
    assert layer.stride == 2 and layer.padding == 0 and layer.pointwise.bias is None
    assert layer(torch.randn(1, 2, 9, 9)).shape == (1, 4, 4, 4)


NON_FLOAT = [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64]


@pytest.mark.parametrize("dtype", NON_FLOAT)
@pytest.mark.parametrize("impl", IMPLS)
def test_non_float_input_is_refused_on_every_path(impl, dtype):
    layer = DepthwiseSTFTSeparable(2, 3, 5, impl=impl)
    x = torch.ones(1, 2, 6, 6).to(dtype)
    with pytest.raises(ValueError, match=f"got dtype {dtype}"):
        layer(x)
    with pytest.raises(ValueError, match=f"got dtype {dtype}"):
        stft_separable(x, layer.pointwise.weight, kernel_size=5, impl=impl)


@pytest.mark.parametrize("dtype", NON_FLOAT)
def test_non_float_input_is_refused_by_the_bank_and_the_multiscale_layer(dtype):
    x = torch.ones(1, 2, 6, 6).to(dtype)
    for call in (DepthwiseSTFT(2), MultiScaleSTFTSeparable(2, 3), lambda t: depthwise_stft(t)):
        with pytest.raises(ValueError, match=f"got dtype {dtype}"):
            call(x)


def _window_holds(mask: torch.Tensor, n: int, stride: int) -> torch.Tensor:
    """Independent reference: whether each output's n×n zero-padded window holds a True."""
    hit = F.max_pool2d(mask.double(), n, stride, padding=n // 2) > 0
    return hit.any(dim=1, keepdim=True)


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("n", [3, 5])
def test_non_finite_input_gives_non_finite_output_exactly_in_its_windows(n, stride, bad):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 11, 10, dtype=torch.float64)
    x[0, 1, 4, 6] = bad
    x[1, 2, 0, 0] = bad
    expected = _window_holds(~torch.isfinite(x), n, stride).expand(-1, 5, -1, -1)
    reference = DepthwiseSTFTSeparable(3, 5, n, stride=stride, dtype=torch.float64)
    clean = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
    for impl in IMPLS[1:]:
        layer = DepthwiseSTFTSeparable(3, 5, n, stride=stride, dtype=torch.float64, impl=impl)
        layer.load_state_dict(reference.state_dict())
        for train in (True, False):
            y = layer.train(train)(x).detach()
            assert torch.equal(~torch.isfinite(y), expected), (impl, train)
            # Away from the bad pixels every path computes the ordinary result.
            torch.testing.assert_close(y[~expected], reference(clean).detach()[~expected])


def test_weights_trained_with_another_kernel_size_do_not_load():
    saved = DepthwiseSTFTSeparable(4, 8, kernel_size=5).state_dict()
    target = DepthwiseSTFTSeparable(4, 8)
    for strict in (True, False):
        with pytest.raises(RuntimeError, match=r"saved with kernel_size=5.*kernel_size=3"):
            target.load_state_dict(saved, strict=strict)


def test_multiscale_records_each_bank():
    saved = MultiScaleSTFTSeparable(2, 3, (3, 7)).state_dict()
    assert [saved[f"stfts.{i}._extra_state"].tolist() for i in (0, 1)] == [[3], [7]]
    with pytest.raises(RuntimeError, match=r"stfts\.1\. was saved with kernel_size=7"):
        MultiScaleSTFTSeparable(2, 3, (3, 5)).load_state_dict(saved)


def test_state_dicts_without_the_kernel_size_still_load_strictly():
    torch.manual_seed(3)
    source = DepthwiseSTFTSeparable(4, 8, 5)
    legacy = {k: v for k, v in source.state_dict().items() if not k.endswith("_extra_state")}
    target = DepthwiseSTFTSeparable(4, 8, 5)
    result = target.load_state_dict(legacy, strict=True)
    assert not result.missing_keys
    assert torch.equal(target.pointwise.weight, source.pointwise.weight)


def test_whole_model_state_dict_round_trips_through_safetensors(tmp_path):
    from dwstft.train.checkpoint import load_weights, save_weights

    torch.manual_seed(4)
    model = create_model("stftnet_b8_f128").eval()
    path = tmp_path / "w.safetensors"
    save_weights(path, model.state_dict(), {"model": "stftnet_b8_f128"})
    state = load_weights(path).state
    again = create_model("stftnet_b8_f128").eval()
    again.load_state_dict(state)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_scripted_layers_keep_working_with_the_recorded_kernel_size():
    layer = nn.Sequential(DepthwiseSTFTSeparable(3, 4, 5), MultiScaleSTFTSeparable(4, 4)).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(layer)(x), layer(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "cls", [DepthwiseSTFT, DepthwiseSTFTSeparable, MultiScaleSTFTSeparable, ReLPU]
)
def test_help_shows_the_layer_arguments_not_torch_boilerplate(cls):
    import pydoc

    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert "Initialize internal Module state" not in text
    assert "keyword-only" in text and "Shapes:" in text
