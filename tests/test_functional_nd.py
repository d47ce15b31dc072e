import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dwstft.nn.basis import maps_per_channel, stft_basis_nd
from dwstft.nn.functional import (
    IMPLS_ND,
    choose_impl,
    depthwise_stft_nd,
    fold_weight,
    stft_separable_nd,
)
from stft_nd_reference import stft_nd_reference

PATHS = [p for p in IMPLS_ND if p != "auto"]
# (kernel size, input spatial size): odd, even and anisotropic sizes, every 3-D variant.
CASES = [
    ((3,), (9,)),
    ((5,), (8,)),
    ((7,), (5,)),
    ((3, 3, 3), (5, 6, 7)),
    ((3, 3, 3), (4, 4, 4)),
    ((5, 5, 5), (6, 5, 7)),
    ((1, 3, 3), (4, 7, 6)),
    ((1, 5, 5), (3, 8, 5)),
    ((3, 1, 1), (8, 3, 4)),
    ((5, 3, 1), (6, 5, 3)),
    ((3, 5, 7), (5, 9, 8)),
]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def case_input(kernel_size, size, channels=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, channels, *size, dtype=torch.float64, generator=g)


@pytest.mark.parametrize(("kernel_size", "size"), CASES)
def test_depthwise_stft_matches_the_literal_sum(kernel_size, size):
    x = case_input(kernel_size, size)
    ref = stft_nd_reference(x.numpy(), kernel_size)
    out = depthwise_stft_nd(x, kernel_size)
    assert out.shape == ref.shape
    assert rel_err(out.numpy(), ref) <= 1e-9


@pytest.mark.parametrize(("kernel_size", "size"), CASES)
@pytest.mark.parametrize("impl", PATHS)
def test_separable_matches_literal_sum_then_pointwise(kernel_size, size, impl):
    x = case_input(kernel_size, size, seed=1)
    maps = maps_per_channel(kernel_size)
    g = torch.Generator().manual_seed(2)
    shape = (3, maps * 2) + (1,) * len(kernel_size)
    w = torch.randn(*shape, dtype=torch.float64, generator=g)
    b = torch.randn(3, dtype=torch.float64, generator=g)
    ref_maps = stft_nd_reference(x.numpy(), kernel_size)
    ref = np.einsum("fk,nk...->nf...", w.reshape(3, -1).numpy(), ref_maps)
    ref += b.numpy().reshape(1, 3, *(1,) * len(kernel_size))
    out = stft_separable_nd(x, w, b, kernel_size, impl=impl)
    assert rel_err(out.detach().numpy(), ref) <= 1e-9


@pytest.mark.parametrize("impl", PATHS)
@pytest.mark.parametrize(
    ("kernel_size", "size", "stride", "padding"),
    [
        ((3,), (11,), (2,), (1,)),
        ((5,), (10,), (3,), (0,)),
        ((3, 3, 3), (5, 7, 6), (2, 1, 2), (1, 0, 2)),
        ((1, 3, 3), (4, 7, 8), (1, 2, 3), (0, 1, 1)),
    ],
)
def test_stride_and_padding_match_the_literal_sum(impl, kernel_size, size, stride, padding):
    x = case_input(kernel_size, size, seed=3)
    maps = maps_per_channel(kernel_size)
    w = torch.randn(2, maps * 2, *(1,) * len(kernel_size), dtype=torch.float64)
    ref = np.einsum(
        "fk,nk...->nf...",
        w.reshape(2, -1).numpy(),
        stft_nd_reference(x.numpy(), kernel_size, stride, padding),
    )
    out = stft_separable_nd(x, w, None, kernel_size, stride, padding, impl=impl)
    assert rel_err(out.numpy(), ref) <= 1e-9
    maps_ref = stft_nd_reference(x.numpy(), kernel_size, stride, padding)
    assert rel_err(depthwise_stft_nd(x, kernel_size, stride, padding).numpy(), maps_ref) <= 1e-9


@pytest.mark.parametrize("impl", PATHS)
def test_valid_padding_crops_the_border(impl):
    x = torch.randn(1, 2, 6, 7, 8, dtype=torch.float64)
    w = torch.randn(3, 52, 1, 1, 1, dtype=torch.float64)
    same = stft_separable_nd(x, w, None, 3, impl=impl)
    valid = stft_separable_nd(x, w, None, 3, padding="valid", impl=impl)
    torch.testing.assert_close(valid, same[..., 1:-1, 1:-1, 1:-1])


@pytest.mark.parametrize("impl", PATHS)
@pytest.mark.parametrize(
    ("kernel_size", "size", "stride"),
    [
        ((3,), (7,), 1),
        ((5,), (9,), 2),
        ((3, 3, 3), (3, 4, 3), 1),
        ((1, 3, 3), (2, 4, 5), 2),
        ((3, 1, 1), (5, 2, 3), 1),
    ],
)
def test_gradcheck_every_path(impl, kernel_size, size, stride):
    g = torch.Generator().manual_seed(7)
    maps = maps_per_channel(kernel_size)
    channels = 2 if len(kernel_size) == 1 else 1  # keeps the 3-D gradgradcheck fast
    x = torch.randn(2, channels, *size, dtype=torch.float64, generator=g, requires_grad=True)
    shape = (3, channels * maps) + (1,) * len(kernel_size)
    w = torch.randn(*shape, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)

    def fn(x, w, b):
        return stft_separable_nd(x, w, b, kernel_size, stride, impl=impl)

    assert torch.autograd.gradcheck(fn, (x, w, b))
    if impl in ("grouped", "folded"):
        assert torch.autograd.gradgradcheck(fn, (x, w, b))


def test_recompute_gradcheck_without_bias_and_single_inputs():
    x = torch.randn(1, 2, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 52, 1, 1, 1, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda x: stft_separable_nd(x, w, None, 3, impl="recompute"), (x,)
    )
    w.requires_grad_()
    x.requires_grad_(False)
    assert torch.autograd.gradcheck(
        lambda w: stft_separable_nd(x, w, None, 3, impl="recompute"), (w,)
    )


def saved_bytes(fn) -> int:
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


@pytest.mark.parametrize("kernel_size", [(3, 3, 3), (5, 5, 5), (1, 3, 3), (5,)])
@pytest.mark.parametrize("impl", PATHS)
def test_saved_for_backward(kernel_size, impl):
    dims = len(kernel_size)
    maps = maps_per_channel(kernel_size)
    x = torch.randn(2, 4, *(6,) * dims, requires_grad=True)
    w = torch.randn(8, 4 * maps, *(1,) * dims, requires_grad=True)
    nbytes = saved_bytes(lambda: stft_separable_nd(x, w, None, kernel_size, impl=impl))
    kernel_numel = int(np.prod(kernel_size))
    input_and_weights = 4 * (x.numel() + w.numel() + 8 * 4 * kernel_numel + maps * kernel_numel)
    if impl == "grouped":
        assert nbytes >= maps * x.numel() * 4  # the M·C maps are kept
    else:
        assert nbytes <= input_and_weights


def test_fold_weight_is_the_sum_of_weighted_kernels():
    basis = stft_basis_nd((3, 3, 3), dtype=torch.float64)
    w = torch.randn(3, 52, 1, 1, 1, dtype=torch.float64)
    k = fold_weight(w, basis)
    assert k.shape == (3, 2, 3, 3, 3)
    for f in range(3):
        for c in range(2):
            expected = sum(w[f, c * 26 + m, 0, 0, 0] * basis[m] for m in range(26))
            torch.testing.assert_close(k[f, c], expected)
    with pytest.raises(ValueError, match="multiple of 26"):
        fold_weight(torch.randn(3, 27), basis)


def test_choose_impl_rules():
    for kernel_size in [(3, 3, 3), (1, 3, 3), (3, 1, 1), (5, 5, 5), (7, 7, 7), (3,), (13,)]:
        assert choose_impl(kernel_size, needs_grad=True) == "folded"
        assert choose_impl(kernel_size, needs_grad=False) == "folded"
    assert choose_impl((15,), needs_grad=True) == "recompute"
    assert choose_impl((25,), needs_grad=False) == "folded"
    assert choose_impl((27,), needs_grad=False) == "grouped"


@settings(max_examples=25, deadline=None)
@given(
    n=st.sampled_from([3, 5, 7]),
    length=st.integers(1, 12),
    c=st.integers(1, 3),
    stride=st.integers(1, 3),
    impl=st.sampled_from(PATHS),
)
def test_property_1d_paths_agree_with_reference(n, length, c, stride, impl):
    g = torch.Generator().manual_seed(length * 10 + c)
    x = torch.randn(1, c, length, dtype=torch.float64, generator=g)
    w = torch.randn(2, 2 * c, 1, dtype=torch.float64, generator=g)
    ref_maps = stft_nd_reference(x.numpy(), (n,), (stride,))
    ref = np.einsum("fk,nkl->nfl", w[:, :, 0].numpy(), ref_maps)
    out = stft_separable_nd(x, w, None, n, stride, impl=impl)
    assert rel_err(out.numpy(), ref) <= 1e-9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_size": (3, 3)}, "kernel_size"),
        ({"stride": 0}, "stride"),
        ({"stride": (1, 2)}, "stride"),
        ({"padding": "full"}, "padding"),
        ({"padding": -1}, "padding"),
        ({"padding": (1, 1)}, "padding"),
        ({"impl": "shift"}, "impl"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    x = torch.randn(1, 2, 4, 5, 5)
    w = torch.randn(3, 52, 1, 1, 1)
    with pytest.raises(ValueError, match=match):
        stft_separable_nd(x, w, **kwargs)


@pytest.mark.parametrize("impl", IMPLS_ND)
def test_non_float_input_raises_on_every_path(impl):
    w = torch.randn(3, 52, 1, 1, 1)
    x = torch.randint(0, 255, (1, 2, 4, 5, 5), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"floating-point .* got dtype torch.uint8"):
        stft_separable_nd(x, w, impl=impl)
    with pytest.raises(ValueError, match=r"got dtype torch.int64"):
        depthwise_stft_nd(torch.arange(10).reshape(1, 1, 10))


def test_bad_input_and_weight_shapes():
    w = torch.randn(3, 52, 1, 1, 1)
    with pytest.raises(ValueError, match=r"3-D \(N, C, L\) or 5-D .* got 4-D"):
        stft_separable_nd(torch.randn(2, 2, 5, 5), w)
    with pytest.raises(ValueError, match=r"shape \(F, 78, 1, 1, 1\) for 3 input channels"):
        stft_separable_nd(torch.randn(1, 3, 4, 5, 5), w)
    with pytest.raises(ValueError, match=r"shape \(F, 6, 1\)"):
        stft_separable_nd(torch.randn(1, 3, 9), torch.randn(2, 6, 3))
