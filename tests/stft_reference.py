"""An independent NumPy reference of the paper's Eq. 2, written as a direct loop over the
neighbourhood offsets y (no shared code with the package)."""

from __future__ import annotations

import numpy as np

PAPER_FREQUENCIES = ((1, 0), (0, 1), (1, 1), (1, -1))  # v1..v4 in units of a = 1/n


def stft_reference(x: np.ndarray, n: int) -> np.ndarray:
    """F(v, x) = sum_{y in [-r, r]^2} f(x - y) exp(-j 2 pi v^T y), zero padding.

    Args:
        x: (N, C, H, W) float64.
    Returns:
        (N, 8C, H, W) float64, channel c*8 + 2k = Re F(v_{k+1}), c*8 + 2k + 1 = Im.
    """
    batch, channels, height, width = x.shape
    r = n // 2
    a = 1.0 / n
    padded = np.pad(x, ((0, 0), (0, 0), (r, r), (r, r)))
    out = np.zeros((batch, channels, 4, height, width), dtype=np.complex128)
    for k, (fr, fc) in enumerate(PAPER_FREQUENCIES):
        v = np.array([fr * a, fc * a])
        for y0 in range(-r, r + 1):
            for y1 in range(-r, r + 1):
                # f(x - y) for every pixel x at once: row p reads padded row p - y0 + r.
                shifted = padded[:, :, r - y0 : r - y0 + height, r - y1 : r - y1 + width]
                out[:, :, k] += shifted * np.exp(-2j * np.pi * (v[0] * y0 + v[1] * y1))
    result = np.empty((batch, channels, 4, 2, height, width))
    result[:, :, :, 0] = out.real
    result[:, :, :, 1] = out.imag
    return result.reshape(batch, channels * 8, height, width)
