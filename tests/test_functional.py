import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dwstft.nn.basis import stft_basis
from dwstft.nn.functional import IMPLS, choose_impl, depthwise_stft, fold_weight, stft_separable
from dwstft.nn.separable import stft_maps_shift, to_frequency_major
from stft_reference import stft_reference

PATHS = [p for p in IMPLS if p != "auto"]
SIZES = [(7, 7), (8, 8), (5, 11), (12, 6), (1, 1), (2, 9)]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("n", [3, 5, 7])
@pytest.mark.parametrize("hw", SIZES)
def test_depthwise_stft_matches_eq2(n, hw):
    x = torch.randn(2, 3, *hw, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    ref = stft_reference(x.numpy(), n)
    assert rel_err(depthwise_stft(x, n).numpy(), ref) <= 1e-9
    shift = stft_maps_shift(x, n, stride=1, padding=n // 2)  # channel m*C + c
    channel_major = shift.unflatten(1, (8, 3)).transpose(1, 2).flatten(1, 2)
    assert rel_err(channel_major.numpy(), ref) <= 1e-9


@pytest.mark.parametrize("n", [3, 5, 7])
@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("impl", PATHS)
def test_stft_separable_matches_eq2_then_pointwise(n, hw, impl):
    g = torch.Generator().manual_seed(100 + n)
    x = torch.randn(2, 3, *hw, dtype=torch.float64, generator=g)
    w = torch.randn(5, 24, 1, 1, dtype=torch.float64, generator=g)
    b = torch.randn(5, dtype=torch.float64, generator=g)
    maps = stft_reference(x.numpy(), n)
    ref = np.einsum("fk,nkhw->nfhw", w[:, :, 0, 0].numpy(), maps) + b.numpy()[:, None, None]
    out = stft_separable(x, w, b, n, impl=impl)
    assert rel_err(out.detach().numpy(), ref) <= 1e-9


@pytest.mark.parametrize("impl", PATHS)
@pytest.mark.parametrize("stride", [2, 3])
@pytest.mark.parametrize("hw", [(9, 9), (8, 11)])
def test_strided_paths_subsample_the_stride1_output(impl, stride, hw):
    g = torch.Generator().manual_seed(stride)
    x = torch.randn(1, 2, *hw, dtype=torch.float64, generator=g)
    w = torch.randn(4, 16, 1, 1, dtype=torch.float64, generator=g)
    for n in (3, 5):
        dense = stft_separable(x, w, None, n, impl="grouped")
        strided = stft_separable(x, w, None, n, stride=stride, impl=impl)
        torch.testing.assert_close(strided, dense[..., ::stride, ::stride])


@pytest.mark.parametrize("impl", PATHS)
def test_valid_padding_crops_the_border(impl):
    x = torch.randn(1, 2, 9, 10, dtype=torch.float64)
    w = torch.randn(3, 16, 1, 1, dtype=torch.float64)
    same = stft_separable(x, w, None, 5, impl=impl)
    valid = stft_separable(x, w, None, 5, padding="valid", impl=impl)
    torch.testing.assert_close(valid, same[..., 2:-2, 2:-2])


@pytest.mark.parametrize("impl", PATHS)
@pytest.mark.parametrize(("n", "stride", "padding"), [(3, 1, "same"), (5, 2, "same"), (3, 2, 0)])
def test_gradcheck_every_path(impl, n, stride, padding):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(3, 16, 1, 1, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)

    def fn(x, w, b):
        return stft_separable(x, w, b, n, stride, padding, impl=impl)

    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("impl", ["recompute", "shift"])
def test_gradcheck_without_bias_and_input_only(impl):
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 24, 1, 1, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: stft_separable(x, w, None, 5, impl=impl), (x,))
    w.requires_grad_()
    x.requires_grad_(False)
    assert torch.autograd.gradcheck(lambda w: stft_separable(x, w, None, 3, impl=impl), (w,))


def test_to_frequency_major_matches_the_map_order():
    w = torch.arange(2 * 24, dtype=torch.float64).reshape(2, 24, 1, 1)
    wf = to_frequency_major(w)
    for m in range(8):
        for c in range(3):
            assert wf[1, m * 3 + c, 0, 0] == w[1, c * 8 + m, 0, 0]


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("impl", ["recompute", "shift", "folded", "grouped"])
def test_saved_for_backward(n, impl):
    x = torch.randn(4, 6, 16, 16, requires_grad=True)
    w = torch.randn(32, 48, 1, 1, requires_grad=True)
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        stft_separable(x, w, None, n, impl=impl)
    nbytes = sum(storages.values())
    input_and_weights = 4 * (x.numel() + w.numel() + 6 * 32 * n * n + 8 * n * n)
    if impl == "grouped":
        assert nbytes >= 8 * x.numel() * 4  # the 8C maps are kept
    else:
        assert nbytes <= input_and_weights


def test_fold_weight_is_the_sum_of_weighted_kernels():
    basis = stft_basis(5, dtype=torch.float64)
    w = torch.randn(3, 16, 1, 1, dtype=torch.float64)
    k = fold_weight(w, basis)
    assert k.shape == (3, 2, 5, 5)
    for f in range(3):
        for c in range(2):
            expected = sum(w[f, c * 8 + i, 0, 0] * basis[i] for i in range(8))
            torch.testing.assert_close(k[f, c], expected)


def test_choose_impl_rules():
    assert choose_impl((3, 3), needs_grad=True, compiling=False) == "folded"
    assert choose_impl((3, 3), needs_grad=False, compiling=False) == "folded"
    assert choose_impl((5, 5), needs_grad=True, compiling=False) == "recompute"
    assert choose_impl((5, 5), needs_grad=True, compiling=True) == "folded"
    assert choose_impl((7, 7), needs_grad=False, compiling=False) == "grouped"


@settings(max_examples=25, deadline=None)
@given(
    n=st.sampled_from([3, 5, 7]),
    h=st.integers(1, 10),
    w=st.integers(1, 10),
    c=st.integers(1, 3),
    impl=st.sampled_from(PATHS),
)
def test_property_all_paths_agree_with_reference(n, h, w, c, impl):
    g = torch.Generator().manual_seed(h * 100 + w)
    x = torch.randn(1, c, h, w, dtype=torch.float64, generator=g)
    wt = torch.randn(2, 8 * c, 1, 1, dtype=torch.float64, generator=g)
    ref = np.einsum("fk,nkhw->nfhw", wt[:, :, 0, 0].numpy(), stft_reference(x.numpy(), n))
    assert rel_err(stft_separable(x, wt, None, n, impl=impl).numpy(), ref) <= 1e-9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"stride": 0}, "stride"),
        ({"padding": "full"}, "padding"),
        ({"padding": -1}, "padding"),
        ({"impl": "fast"}, "impl"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    x = torch.randn(1, 2, 5, 5)
    w = torch.randn(3, 16, 1, 1)
    with pytest.raises(ValueError, match=match):
        stft_separable(x, w, **kwargs)


def test_bad_input_and_weight_shapes():
    w = torch.randn(3, 16, 1, 1)
    with pytest.raises(ValueError, match=r"4-D .* got 3-D"):
        stft_separable(torch.randn(2, 5, 5), w)
    with pytest.raises(ValueError, match=r"shape \(F, 24, 1, 1\) for 3 input channels"):
        stft_separable(torch.randn(1, 3, 5, 5), w)
    with pytest.raises(ValueError, match="4-D"):
        depthwise_stft(torch.randn(5, 5))
