"""An independent NumPy reference of the 1-D and 3-D local Fourier transforms: a literal
sum over the neighbourhood offsets y (no shared code with the package).

F(v, x) = sum_{y in box} f(x - y) exp(-j 2 pi v^T y), zero padding, then strided sampling.
The frequency points are written out here from the papers (LP-3DCNN's 13 in 3-D, the 2-D
paper's four on the two active dimensions of a 1×n×n or n×n×1 kernel, one in 1-D).
"""

from __future__ import annotations

import itertools

import numpy as np

POINTS_BY_ACTIVE = {
    1: [(1,)],
    2: [(1, 0), (0, 1), (1, 1), (1, -1)],
    3: [
        (1, 0, 0),
        (1, 0, 1),
        (1, 0, -1),
        (0, 1, 0),
        (1, 1, 0),
        (1, -1, 0),
        (1, 1, 1),
        (1, 1, -1),
        (1, -1, 1),
        (1, -1, -1),
        (0, 1, 1),
        (0, 1, -1),
        (0, 0, 1),
    ],
}


def reference_points(kernel_size: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The points in units of 1/n_i, with 0 on size-1 dimensions."""
    active = [i for i, n in enumerate(kernel_size) if n > 1]
    points = []
    for k_active in POINTS_BY_ACTIVE[len(active)]:
        k = [0] * len(kernel_size)
        for i, ki in zip(active, k_active, strict=True):
            k[i] = ki
        points.append(tuple(k))
    return points


def stft_nd_reference(
    x: np.ndarray,
    kernel_size: tuple[int, ...],
    stride: tuple[int, ...] | None = None,
    padding: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Args: x (N, C, *spatial) float64. Padding defaults to n_i // 2, stride to 1.

    Returns (N, M·C, *out) float64: channel c*M + 2p = Re F(v_{p+1}), c*M + 2p + 1 = Im.
    """
    dims = len(kernel_size)
    stride = stride or (1,) * dims
    radius = [n // 2 for n in kernel_size]
    padding = padding if padding is not None else tuple(radius)
    batch, channels, *size = x.shape
    padded = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in padding])
    # Output position o reads the centre x = o*s + r - p of the unpadded input; with the
    # padding p, f(x - y) sits at padded index o*s + r - y.
    out_size = [
        (s + 2 * p - n) // st + 1
        for s, p, n, st in zip(size, padding, kernel_size, stride, strict=True)
    ]
    points = reference_points(kernel_size)
    out = np.zeros((batch, channels, len(points), *out_size), dtype=np.complex128)
    for y in itertools.product(*[range(-r, r + 1) for r in radius]):
        index = tuple(
            slice(r - yi, r - yi + (o - 1) * st + 1, st)
            for r, yi, o, st in zip(radius, y, out_size, stride, strict=True)
        )
        shifted = padded[(slice(None), slice(None), *index)]
        for p, k in enumerate(points):
            phase = sum(ki * yi / n for ki, yi, n in zip(k, y, kernel_size, strict=True))
            out[:, :, p] += shifted * np.exp(-2j * np.pi * phase)
    result = np.empty((batch, channels, len(points), 2, *out_size))
    result[:, :, :, 0] = out.real
    result[:, :, :, 1] = out.imag
    return result.reshape(batch, channels * len(points) * 2, *out_size)
