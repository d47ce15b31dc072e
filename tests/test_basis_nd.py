import itertools
import math

import numpy as np
import pytest
import torch

from dwstft.nn.basis import (
    FREQUENCIES,
    POINTS_3D,
    check_kernel_size_nd,
    frequency_points,
    maps_per_channel,
    stft_basis,
    stft_basis_nd,
)


def canonical_points(dims: int) -> set[tuple[int, ...]]:
    """Every non-zero k in {-1, 0, 1}^dims whose first non-zero entry is positive."""
    return {
        k
        for k in itertools.product((-1, 0, 1), repeat=dims)
        if any(k) and next(v for v in k if v) > 0
    }


@pytest.mark.parametrize(
    ("kernel_size", "count"),
    [((3,), 1), ((7,), 1), ((3, 3, 3), 13), ((5, 3, 7), 13), ((1, 3, 3), 4), ((3, 1, 1), 1)],
)
def test_lowest_points_one_of_each_pair(kernel_size, count):
    points = frequency_points(kernel_size)
    assert len(points) == count == len(set(points))
    active = [i for i, n in enumerate(kernel_size) if n > 1]
    assert all(k[i] == 0 for k in points for i in range(len(kernel_size)) if i not in active)
    on_active = {tuple(k[i] for i in active) for k in points}
    assert on_active == canonical_points(len(active))
    assert maps_per_channel(kernel_size) == 2 * count == 3 ** len(active) - 1


def test_point_tables_are_complete_and_ordered_like_the_papers():
    assert set(POINTS_3D) == canonical_points(3) and len(POINTS_3D) == 13
    assert FREQUENCIES == ((1, 0), (0, 1), (1, 1), (1, -1))  # the 2-D paper's v1..v4
    # Spatial-only and temporal-only 3-D kernels place the points on the active dims.
    assert frequency_points((1, 5, 5)) == ((0, 1, 0), (0, 0, 1), (0, 1, 1), (0, 1, -1))
    assert frequency_points((5, 1, 1)) == ((1, 0, 0),)


@pytest.mark.parametrize("kernel_size", [(3,), (5,), (3, 3, 3), (3, 5, 7), (1, 5, 5), (7, 1, 1)])
def test_kernels_are_the_complex_exponentials(kernel_size):
    basis = stft_basis_nd(kernel_size, dtype=torch.float64).numpy()
    offsets = np.meshgrid(*[np.arange(n) - n // 2 for n in kernel_size], indexing="ij")
    for p, k in enumerate(frequency_points(kernel_size)):
        phase = sum(ki * off / n for ki, off, n in zip(k, offsets, kernel_size, strict=True))
        expected = np.exp(2j * np.pi * phase)
        np.testing.assert_allclose(basis[2 * p], expected.real, rtol=0, atol=1e-14)
        np.testing.assert_allclose(basis[2 * p + 1], expected.imag, rtol=0, atol=1e-14)


@pytest.mark.parametrize("n", [3, 5, 7])
def test_spatial_only_kernels_are_the_2d_paper_bank(n):
    spatial = stft_basis_nd((1, n, n), dtype=torch.float64)[:, 0]
    torch.testing.assert_close(spatial, stft_basis(n, dtype=torch.float64), rtol=0, atol=1e-14)


def test_basis_is_a_fresh_cpu_copy_even_under_a_device_context():
    with torch.device("meta"):
        first = stft_basis_nd((3, 3, 3), dtype=torch.float64)
    assert first.device.type == "cpu"
    first.zero_()
    again = stft_basis_nd((3, 3, 3), dtype=torch.float64)
    assert again.abs().sum() > 0 and again[0, 1, 1, 1] == 1.0
    assert stft_basis_nd((3,), dtype=torch.float16).dtype == torch.float16


@pytest.mark.parametrize(
    ("value", "dims"),
    [
        (4, 1),
        (1, 1),
        (0, 3),
        (-3, 3),
        (True, 3),
        (2.0, 1),
        ((3, 3), 3),
        ((1, 1, 1), 3),
        ((3, 4, 3), 3),
    ],
)
def test_bad_kernel_sizes(value, dims):
    with pytest.raises(ValueError, match="kernel_size must be"):
        check_kernel_size_nd(value, dims)


def test_kernel_size_forms():
    assert check_kernel_size_nd(5, 1) == (5,)
    assert check_kernel_size_nd(3, 3) == (3, 3, 3)
    assert check_kernel_size_nd([1, 3, 5], 3) == (1, 3, 5)
    assert math.prod(check_kernel_size_nd((3, 1, 1), 3)) == 3
