"""The fixed Depthwise-STFT filter banks of the 1-D, 2-D and 3-D layers (paper Eq. 2, 4, 8).

For a kernel of size ``n = (n_1, ..., n_d)`` (odd sizes), the local Fourier transform at a
frequency ``v`` is the paper's Eq. 2,

    F(v, x) = sum_{y in box} f(x - y) * exp(-j 2 pi v^T y),   y_i in [-r_i, r_i], n_i = 2 r_i + 1,

with the first coordinate the row (height) in 2-D. Substituting ``u = -y`` gives
``sum_u f(x + u) exp(+j 2 pi v^T u)``, which is exactly what ``conv1d`` / ``conv2d`` /
``conv3d`` (cross-correlations) compute with the kernel

    K_v[i] = exp(+j 2 pi v^T (i - r)),   i_k = 0 .. n_k - 1.

(In 2-D it equals Eq. 4's ``w_v`` read with ``y = (r - i, r - j)``.)

Frequencies. Along dimension i the local grid has spacing ``a_i = 1 / n_i``; a dimension of
size 1 has only the zero frequency (``a_i = 1`` is 0 modulo 1). The layers use the lowest
non-zero points of the grid, one of each ± pair: ``v = (k_1 a_1, ..., k_d a_d)`` with
``k_i`` in {-1, 0, 1}, ``k_i = 0`` on size-1 dimensions and ``k != 0``. With m dimensions of
size > 1 ("active") there are (3^m - 1) / 2 such points, in this order (``k`` written over the
active dimensions, in the order of the tensor's dimensions):

- m = 1: (1,) — 1-D signals, and the temporal-only n×1×1 kernel of the spatio-temporal
  STFT (Kumawat et al., TPAMI 2022);
- m = 2: ``FREQUENCIES`` = (1, 0), (0, 1), (1, 1), (1, -1) — the 2-D paper's v1..v4: the
  2-D bank is this case, and the spatial-only 1×n×n kernel is the 2-D Depthwise-STFT
  applied to every frame, maps in the same order;
- m = 3: the 13 points of LP-3DCNN (Kumawat & Raman, CVPR 2019), see ``POINTS_3D``.

Each point gives two real maps: index ``2p`` is Re F(v_{p+1}), ``2p + 1`` is Im F(v_{p+1}).
Each 2-D kernel is separable into a row filter and a column filter drawn from
{box, cos, sin} (``separable_filters``): the basis of the shift-and-add path.
docs/family.md lists what the papers leave open and what we chose.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

#: The four frequencies v1..v4 of the 2-D paper, in units of a = 1/n: (row, column). Also
#: the points of any kernel with two active dimensions.
FREQUENCIES: tuple[tuple[int, ...], ...] = ((1, 0), (0, 1), (1, 1), (1, -1))
#: Points over one active dimension, in units of a = 1/n.
POINTS_1D: tuple[tuple[int, ...], ...] = ((1,),)
#: Points over three active dimensions (LP-3DCNN's 13), in the tensor's dimension order.
POINTS_3D: tuple[tuple[int, ...], ...] = (
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
)
_POINTS_BY_ACTIVE = {1: POINTS_1D, 2: FREQUENCIES, 3: POINTS_3D}

#: Output maps per input channel of the 2-D bank: Re and Im at the four frequencies.
MAPS_PER_CHANNEL = 2 * len(FREQUENCIES)


def check_positive(name: str, value: object) -> int:
    """Validate a positive int argument (channels, stride); returns it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_kernel_size_nd(kernel_size: object, dims: int) -> tuple[int, ...]:
    """Validate the neighbourhood of a ``dims``-D layer; returns one size per dimension.

    Accepted: an odd int >= 3 (every dimension that size), or a tuple of ``dims`` odd ints
    >= 1 with at least one >= 3. The 2-D kernel is square: a pair must be (n, n).

    Raises:
        ValueError: naming the argument, the value received and what is expected.
    """
    expected = "an odd int >= 3"
    if dims == 3:
        expected += f" or a tuple of {dims} odd ints >= 1, at least one >= 3"
    if isinstance(kernel_size, (tuple, list)):
        sizes = tuple(kernel_size)
        if len(sizes) != dims:
            raise ValueError(f"kernel_size must be {expected}, got {kernel_size!r}")
        if dims == 2 and sizes[0] != sizes[1]:
            raise ValueError(f"kernel_size must be square (n, n), got {sizes}; expected {expected}")
    else:
        sizes = (kernel_size,) * dims
    for n in sizes:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n % 2 == 0:
            raise ValueError(f"kernel_size must be {expected}, got {kernel_size!r}")
    if max(sizes) < 3:
        raise ValueError(
            f"kernel_size must be {expected}, got {kernel_size!r} (no dimension of size >= 3, "
            "so no non-zero frequency)"
        )
    return sizes


def check_kernel_size(kernel_size: object) -> int:
    """Validate a 2-D neighbourhood size: an odd int n >= 3 or a square pair (n, n).
    Returns n."""
    return check_kernel_size_nd(kernel_size, 2)[0]


def frequency_points(kernel_size: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """The frequency points of ``kernel_size`` as integer multiples ``k`` of ``a_i = 1/n_i``,
    one tuple of ``len(kernel_size)`` entries per point (0 on size-1 dimensions)."""
    active = [i for i, n in enumerate(kernel_size) if n > 1]
    points = []
    for k_active in _POINTS_BY_ACTIVE[len(active)]:
        k = [0] * len(kernel_size)
        for i, ki in zip(active, k_active, strict=True):
            k[i] = ki
        points.append(tuple(k))
    return tuple(points)


def maps_per_channel(kernel_size: tuple[int, ...]) -> int:
    """Real maps per input channel: 2 per frequency point (2, 8 or 26)."""
    return 2 * len(frequency_points(kernel_size))


@lru_cache(maxsize=32)
def _basis_float64(kernel_size: tuple[int, ...]) -> torch.Tensor:
    """The kernels in float64 on the CPU. Every tensor here is created on the CPU
    explicitly, so an ambient ``with torch.device(...)`` context (a meta device, say)
    cannot leak into the cache. Callers receive copies."""
    offsets = [torch.arange(n, dtype=torch.float64, device="cpu") - n // 2 for n in kernel_size]
    grids = torch.meshgrid(*offsets, indexing="ij")
    kernels = []
    for k in frequency_points(kernel_size):
        phase = sum(
            (2.0 * math.pi * ki / n) * g
            for ki, n, g in zip(k, kernel_size, grids, strict=True)
            if ki
        )
        kernels += [torch.cos(phase), torch.sin(phase)]
    return torch.stack(kernels)


def stft_basis_nd(
    kernel_size: tuple[int, ...],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The real STFT kernels of a ``len(kernel_size)``-D neighbourhood, for cross-correlation.

    Args:
        kernel_size: validated sizes (``check_kernel_size_nd``), one per dimension.
        dtype, device: of the returned tensor (computed in float64 on the CPU, then cast;
            ``device=None`` means the CPU). Always a fresh copy.

    Returns:
        Tensor (M, *kernel_size) with M = ``maps_per_channel(kernel_size)``: index ``2p`` is
        Re K_{v_{p+1}}, ``2p + 1`` is Im K_{v_{p+1}}; dimension i + 1 is the offset
        ``y_i + r_i`` along the input's i-th spatial dimension.
    """
    basis = _basis_float64(tuple(kernel_size))
    return basis.to(device="cpu" if device is None else device, dtype=dtype, copy=True)


def stft_basis(
    kernel_size: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The 8 real STFT kernels for an n×n neighbourhood, ready for cross-correlation.

    Args:
        kernel_size: n, odd and >= 3 (or a square pair (n, n)).
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
    return _basis_float64((n, n)).to(device=device, dtype=dtype, copy=True)


def separable_filters(kernel_size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The 1-D cosine and sine filters (length n) whose outer products with each other and
    with the box filter (all ones) span the 2-D basis: ``cos[i] = cos(2 pi a (i - r))``,
    ``sin[i] = sin(2 pi a (i - r))``. Returned as Python floats (float64 exact)."""
    n = check_kernel_size(kernel_size)
    r = n // 2
    angles = [2.0 * math.pi * (i - r) / n for i in range(n)]
    return tuple(math.cos(t) for t in angles), tuple(math.sin(t) for t in angles)
