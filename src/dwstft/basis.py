"""The fixed Depthwise-STFT filter bank (paper Eq. 2, 4 and 8).

Eq. 2 defines, for a frequency ``v`` and a pixel ``x``,

    F(v, x) = sum_{y in [-r, r]^2} f(x - y) * exp(-j 2 pi v^T y),     n = 2r + 1,

with the first coordinate of ``x`` and ``y`` the row (height) and the second the column.
Substituting ``u = -y`` gives ``sum_u f(x + u) exp(+j 2 pi v^T u)``, which is exactly what
``torch.nn.functional.conv2d`` (a cross-correlation) computes with the kernel

    K_v[i, j] = exp(+j 2 pi v^T (i - r, j - r)),   i, j = 0 .. n-1.

``stft_basis`` returns the real and imaginary parts of ``K_v`` for the paper's four
frequencies, ready for ``conv2d``. (It equals Eq. 4's ``w_v`` read with ``y = (r-i, r-j)``.)

Each ``K_v`` is separable into a row filter and a column filter drawn from
{box, cos, sin} (see ``separable_filters``): the basis of the shift-and-add path.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

#: The four frequencies v1..v4 of the paper, in units of a = 1/n: (row, column).
FREQUENCIES: tuple[tuple[int, int], ...] = ((1, 0), (0, 1), (1, 1), (1, -1))

#: Number of output maps per input channel: real and imaginary part at four frequencies.
MAPS_PER_CHANNEL = 2 * len(FREQUENCIES)


def check_kernel_size(kernel_size: object) -> int:
    """Validate an STFT neighbourhood size: an odd int >= 3. Returns it as an int.

    Raises:
        ValueError: naming the argument, the value received and what is expected.
    """
    if isinstance(kernel_size, (tuple, list)) and len(kernel_size) == 2:
        if kernel_size[0] != kernel_size[1]:
            raise ValueError(
                f"kernel_size must be square (n, n), got {tuple(kernel_size)}; "
                "expected an odd int >= 3"
            )
        kernel_size = kernel_size[0]
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
        raise ValueError(f"kernel_size must be an odd int >= 3, got {kernel_size!r}")
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd int >= 3, got {kernel_size}")
    return kernel_size


@lru_cache(maxsize=16)
def _basis_float64(kernel_size: int) -> torch.Tensor:
    """The basis in float64 on the CPU, whatever ``torch.device(...)`` context is active (an
    ambient meta device must not end up in the cache). Callers receive copies."""
    n = kernel_size
    r = n // 2
    a = 1.0 / n
    offsets = torch.arange(n, dtype=torch.float64, device="cpu") - r
    rows, cols = torch.meshgrid(offsets, offsets, indexing="ij")
    kernels = []
    for fr, fc in FREQUENCIES:
        phase = 2.0 * math.pi * a * (fr * rows + fc * cols)
        kernels += [torch.cos(phase), torch.sin(phase)]
    return torch.stack(kernels)


def stft_basis(
    kernel_size: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The 8 real STFT kernels for an n×n neighbourhood, ready for cross-correlation.

    Args:
        kernel_size: n, odd and >= 3.
        dtype, device: of the returned tensor (computed in float64, then cast); the
            default device is the current default (``torch.get_default_device()``, which
            follows an active ``with torch.device(...)`` context).

    Returns:
        Tensor (8, n, n). Index ``2k`` is Re K_{v_{k+1}}, ``2k + 1`` is Im K_{v_{k+1}},
        with v1 = [a, 0], v2 = [0, a], v3 = [a, a], v4 = [a, -a], a = 1/n; dim 1 is the
        row offset ``i - r``, dim 2 the column offset ``j - r``.
    """
    n = check_kernel_size(kernel_size)
    if device is None:
        device = torch.get_default_device()
    return _basis_float64(n).to(device=device, dtype=dtype, copy=True)


def separable_filters(kernel_size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The 1-D cosine and sine filters (length n) whose outer products with each other and
    with the box filter (all ones) span the basis: ``cos[i] = cos(2 pi a (i - r))``,
    ``sin[i] = sin(2 pi a (i - r))``. Returned as Python floats (float64 exact)."""
    n = check_kernel_size(kernel_size)
    r = n // 2
    angles = [2.0 * math.pi * (i - r) / n for i in range(n)]
    return tuple(math.cos(t) for t in angles), tuple(math.sin(t) for t in angles)
