"""Local Phase Quantization (LPQ; Ojansivu & Heikkilä, ICISP 2008), exactly, on any device.

LPQ codes a pixel by the signs of the real and imaginary parts of the local 2-D STFT over
its n×n window at the four frequencies of the Depthwise-STFT layer, optionally decorrelated
first. ``lpq`` follows the conventions of the authors' MATLAB reference ``lpq.m`` (2010):

- coefficient order (bit i for i = 0..7): Re, Im of the horizontal frequency [0, a], then
  of the vertical [a, 0], then [a, a] and [a, -a] (rows, columns; a = 1/n), computed as
  ``F(x) = sum_y f(x - y) exp(-j 2 pi v^T y)`` — the 2-D layer's Eq. 2;
- 'valid' borders: codes only where the whole window fits, (H - n + 1) × (W - n + 1);
- decorrelation: covariance of the window's pixels ``rho^||x_i - x_j||``, its image
  ``D = M C M^T`` under the eight coefficient filters, ``A D A`` with the reference's
  almost-unit diagonal ``A = diag(1.000007, ..., 1.000001, 1)``, singular vectors V in
  descending order of singular value, coefficients ``V^T F``;
- quantisation ``> 0`` (a zero coefficient gives bit 0), code = sum_i bit_i 2^i, histogram
  over the 256 codes, ``'nh'`` divides it by its sum.

Two things the reference leaves to floating-point chance are made deterministic (see
docs/family.md, "LPQ"): the sign of each singular vector (``lpq.m`` takes LAPACK's, which
changes with the LAPACK build and with the last bits of D; we make the largest-magnitude
entry of each vector positive, the rule a later published variant of ``lpq.m`` adopts)
and coefficients that are exactly zero in exact arithmetic (flat windows, the imaginary
parts of symmetric windows, ...), which the reference quantises according to rounding noise
of about 1e-15; here they quantise as exact zeros, to bit 0.

Speed: one ``conv2d`` of every image with the eight (decorrelated) filters in float32 on the
CPU (in a two-phase form, see ``_two_phase_kernels``; in chunks of images that stay in
cache), a rigorous bound on its rounding error per image, and an exact float64
recomputation of the few pixels where some coefficient lies within that bound of zero. On
other devices (whose float32 convolutions may use TF32) the convolution runs in float64.
With ``compile=True`` the fast pass is one ``torch.compile``d loop instead
(``dwstft.lpq.fused``); the exact recomputation is the same.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import torch
import torch.nn.functional as F

from dwstft.lpq import fused as lpq_fused
from dwstft.nn.basis import stft_basis

MODES = ("nh", "h", "im")
#: The reference's almost-unit diagonal, "to avoid multiple eigenvalues".
REFERENCE_DIAGONAL = (1.000007, 1.000006, 1.000005, 1.000004, 1.000003, 1.000002, 1.000001, 1.0)
#: ``stft_basis`` maps in the reference's coefficient order: [0, a] (the basis' v2) first,
#: then [a, 0] (v1), [a, a] (v3), [a, -a] (v4); Re then Im each.
REFERENCE_ORDER = (2, 3, 0, 1, 4, 5, 6, 7)
#: Windows recomputed in float64 per batch of the exact pass (bounds its memory).
_EXACT_CHUNK = 1 << 16
#: float32 responses per chunk of images in the fast pass: small enough to stay in cache
#: between the convolution and the comparisons that read them (docs/family.md).
_CHUNK_BYTES = 4 << 20


def _check_arguments(
    window_size: object, decorrelate: object, rho: object, mode: object, compile: object = False
) -> None:
    if (
        isinstance(window_size, bool)
        or not isinstance(window_size, int)
        or window_size < 3
        or window_size % 2 == 0
    ):
        raise ValueError(f"window_size must be an odd int >= 3, got {window_size!r}")
    if not isinstance(decorrelate, bool):
        raise ValueError(f"decorrelate must be True or False, got {decorrelate!r}")
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0.0 < rho < 1.0:
        raise ValueError(f"rho must be a number in (0, 1), got {rho!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(compile, bool):
        raise ValueError(f"compile must be True or False, got {compile!r}")


def _as_batch(images: object, window_size: int) -> torch.Tensor:
    """(N, H, W) or (N, 1, H, W) real tensor → (N, H, W), validated."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(
            f"images must be a torch.Tensor (N, H, W) or (N, 1, H, W), got {type(images).__name__}"
        )
    if images.dim() == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.dim() != 3:
        raise ValueError(
            f"images must be greyscale (N, H, W) or (N, 1, H, W), got shape {tuple(images.shape)}"
        )
    if images.dtype == torch.bool or images.is_complex():
        raise ValueError(f"images must be real numbers (integer or float), got {images.dtype}")
    if min(images.shape[1:]) < window_size:
        raise ValueError(
            f"images of {images.shape[1]}×{images.shape[2]} pixels are smaller than "
            f"window_size={window_size}; LPQ needs at least one full window"
        )
    if images.is_floating_point() and not bool(torch.isfinite(images).all()):
        raise ValueError("images must be finite (no NaN or infinity)")
    return images


def _correlation_model(window_size: int, rho: float) -> torch.Tensor:
    """(n², n²): rho^||p_i - p_j|| over the window's pixel positions, row-major."""
    offsets = torch.arange(window_size, dtype=torch.float64, device="cpu")
    rows, cols = torch.meshgrid(offsets, offsets, indexing="ij")
    points = torch.stack([rows.reshape(-1), cols.reshape(-1)], 1)
    return rho ** torch.cdist(points, points)


def _decorrelation(filters: torch.Tensor, window_size: int, rho: float) -> torch.Tensor:
    """V (8, 8): column i is the i-th singular vector of A D A, largest-magnitude entry
    positive. The eight coefficients split into real (even) and imaginary (odd) filters,
    whose covariance is exactly zero under the point-symmetric model, so V is computed per
    block; its cross-block entries are exact zeros (a full SVD leaves ~1e-17 there, enough
    to turn an exactly-zero coefficient into a random bit)."""
    flat = filters.reshape(8, -1)
    scale = torch.tensor(REFERENCE_DIAGONAL, dtype=torch.float64)
    d = scale[:, None] * (flat @ _correlation_model(window_size, rho) @ flat.T) * scale[None, :]
    columns: list[tuple[float, torch.Tensor]] = []
    for block in ((0, 2, 4, 6), (1, 3, 5, 7)):
        index = torch.tensor(block)
        u, s, _ = torch.linalg.svd(d[index][:, index])
        for k in range(len(block)):
            vector = torch.zeros(8, dtype=torch.float64)
            vector[index] = u[:, k]
            columns.append((float(s[k]), vector))
    columns.sort(key=lambda item: -item[0])
    v = torch.stack([vector for _, vector in columns], 1)
    largest = v.gather(0, v.abs().argmax(0, keepdim=True))
    return v * torch.where(largest < 0, -1.0, 1.0)


@lru_cache(maxsize=16)
def _lpq_operators(
    window_size: int, decorrelate: bool, rho: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(filters (8, n, n), coefficient transform T (8, 8), combined filters T^T filters),
    float64 on the CPU. T is V with decorrelation, the identity without."""
    filters = stft_basis(window_size, dtype=torch.float64, device="cpu")[list(REFERENCE_ORDER)]
    if decorrelate:
        transform = _decorrelation(filters, window_size, rho)
    else:
        transform = torch.eye(8, dtype=torch.float64)
    combined = torch.einsum("ki,kuv->iuv", transform, filters)
    return filters, transform, combined


@lru_cache(maxsize=16)
def _separable_operators(
    window_size: int, decorrelate: bool, rho: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``separable_lpq_filters`` of the operators above, float64 on the CPU."""
    transform = _lpq_operators(window_size, decorrelate, rho)[1]
    return lpq_fused.separable_lpq_filters(window_size, transform, REFERENCE_ORDER)


def lpq_operators(
    window_size: int = 7, decorrelate: bool = True, rho: float = 0.90
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Copies of the fixed operators behind ``lpq``, float64 on the CPU.

    Returns:
        filters (8, n, n): cross-correlation kernels of the eight STFT coefficients in the
            reference's order; transform (8, 8): V (coefficient i of the decorrelated
            vector is ``sum_k V[k, i] F_k``) or the identity; combined (8, n, n): the
            kernels of the decorrelated coefficients, ``sum_k V[k, i] filters[k]``.
    """
    _check_arguments(window_size, decorrelate, rho, "nh")
    return tuple(t.clone() for t in _lpq_operators(window_size, decorrelate, float(rho)))


def _fast_dtype(device: torch.device) -> torch.dtype:
    """float32 where convolutions are exact IEEE float32 (the CPU by default), else float64
    (CUDA convolutions default to TF32, whose rounding the fast pass does not bound)."""
    conv_precision = getattr(getattr(torch.backends.mkldnn, "conv", None), "fp32_precision", "")
    if device.type == "cpu" and conv_precision in ("none", "ieee"):
        return torch.float32
    return torch.float64


#: Multiplier that gathers the low bits of a little-endian int64's eight bytes into its top
#: byte: byte i (0 or 1) times 2^(8j + 7 - j) lands on bit 56 + i exactly when i + j = 7, and
#: every other product falls below bit 56 without carries or above bit 63 (wrapped away).
_GATHER_BYTES = 0x0102040810204080


def _pack_words(words: torch.Tensor) -> torch.Tensor:
    """int64 (...) whose byte i is bit_i (0 or 1) → uint8 (...): sum_i bit_i 2^i.

    One multiplication and a byte view instead of shifting each bit into place: this runs
    on every output pixel, and the three shift-and-or rounds it replaces cost about 4 ms
    more per 256 crops of 128×128 (docs/family.md)."""
    gathered = (words * _GATHER_BYTES).view(torch.uint8)
    return gathered.reshape(*words.shape, 8)[..., 7]


def _pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """bool (..., 8) → uint8 (...): sum_i bit_i 2^i."""
    return _pack_words(bits.contiguous().view(torch.int64)[..., 0])


def _exact_codes(
    images: torch.Tensor,
    where: torch.Tensor,
    window_size: int,
    filters: torch.Tensor,
    transform: torch.Tensor,
) -> torch.Tensor:
    """uint8 codes of the windows whose top-left pixels are ``where`` (K, 3: image, row,
    column), computed in float64.

    Coefficients within their rounding bound of zero (``|F| <= 2 (n² + 2) u ||f||_1 max|w|``,
    u the float64 unit roundoff, a bound on ``2 (n² + 2) u Σ|f||w|``) are exact zeros in
    exact arithmetic for integer-valued images (the smallest non-zero coefficient is many
    orders of magnitude larger; tests check it against an exact algebraic test), and are set
    to zero before decorrelation."""
    device = images.device
    height, width = images.shape[1:]
    flat = filters.reshape(8, -1).T.to(device)
    tolerance = 2 * (window_size**2 + 2) * torch.finfo(torch.float64).eps / 2
    scale = tolerance * flat.abs().sum(0)
    signed = images.dtype != torch.uint8
    transform = transform.to(device)
    pixels = images.contiguous().reshape(-1)
    # Every run of n pixels of the flattened batch, indexed by its first pixel's offset: a
    # window is n runs a row apart, gathered by n index_selects of whole runs (about 8×
    # faster than indexing each pixel, 2× faster than one index_select of whole windows).
    runs = pixels.as_strided((pixels.numel() - window_size + 1, window_size), (1, 1))
    codes = []
    for chunk in where.split(_EXACT_CHUNK):
        start = (chunk[:, 0] * height + chunk[:, 1]) * width + chunk[:, 2]
        rows = [runs.index_select(0, start + row * width) for row in range(window_size)]
        windows = torch.cat(rows, 1)
        values = windows.to(torch.float64)
        largest = values.abs().amax(1) if signed else windows.amax(1).to(torch.float64)
        coefficients = values @ flat
        bound = largest[:, None] * scale
        coefficients = torch.where(coefficients.abs() <= bound, 0.0, coefficients)
        codes.append(_pack_bits(coefficients @ transform > 0))
    return torch.cat(codes)


def _two_phase_kernels(weight: torch.Tensor) -> torch.Tensor:
    """(K, 1, n, n) cross-correlation kernels → (2K, 2, n, (n + 1) / 2) kernels acting on
    the even and odd columns of an image as two channels (a polyphase form: output channel
    q*K + k is response k at the columns of parity q). The same products, arranged so that
    the convolution sees two input and 2K output channels, which oneDNN runs about 1.6×
    faster than one input channel (docs/family.md)."""
    count, _, n, _ = weight.shape
    taps = (n + 1) // 2
    phased = weight.new_zeros(2, count, 2, n, taps)
    for out_parity in range(2):
        for in_parity in range(2):
            for t in range(taps):
                v = 2 * t + in_parity - out_parity
                if 0 <= v < n:
                    phased[out_parity, :, in_parity, :, t] = weight[:, 0, :, v]
    return phased.reshape(2 * count, 2, n, taps)


def _fast_codes(
    images: torch.Tensor, weight: torch.Tensor, bound: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes from the responses to ``weight`` (8, 1, n, n) in its dtype, and where they are
    unsure: some response within ``bound`` (N,) of zero.

    Returns uint8 codes and bool unsure, both (N, H - n + 1, W'), W' the output width rounded
    up to even (the last column is padding when the output width is odd).

    Images go through in chunks whose responses stay in the CPU's cache until quantised
    (``_CHUNK_BYTES``). The convolution's output is channels-last, so the eight responses of
    a pixel are adjacent: their eight comparisons are one int64 word, packed at once."""
    batch, height, width = images.shape
    n = weight.shape[-1]
    out_height = height - n + 1
    half = (width - n + 2) // 2
    kernels = _two_phase_kernels(weight)
    codes = torch.empty(batch, out_height, half, 2, dtype=torch.uint8, device=images.device)
    unsure = torch.empty(batch, out_height, half, 2, dtype=torch.bool, device=images.device)
    step = max(1, _CHUNK_BYTES // (len(kernels) * out_height * half * weight.element_size()))
    for first in range(0, batch, step):
        last = min(first + step, batch)
        x = images[first:last].to(weight.dtype)
        if width % 2:  # an odd width has an odd number of output columns: pad one
            x = F.pad(x, (0, 1))
        phases = x.reshape(last - first, height, -1, 2).permute(0, 3, 1, 2)
        response = F.conv2d(phases, kernels).contiguous(memory_format=torch.channels_last)
        limit = bound[first:last, None, None, None]
        # (c, 16, H', W'/2) channels-last → (c, H', W'/2, 2) words of eight comparisons.
        above = (response > limit).permute(0, 2, 3, 1).view(torch.int64)
        not_below = (response >= -limit).permute(0, 2, 3, 1).view(torch.int64)
        torch.ne(above, not_below, out=unsure[first:last])
        codes[first:last] = _pack_words(above)
    return codes.reshape(batch, out_height, -1), unsure.reshape(batch, out_height, -1)


def _rare_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """``mask.nonzero()`` of a mostly-False bool (N, H, W) mask: int64 (K, 3), row-major.

    Scans eight pixels per int64 word and looks at single pixels only within the words that
    hold some True: about 3× faster than ``nonzero`` over every pixel when 1–2% are True."""
    flat = mask.reshape(-1)
    if len(flat) % 8:
        flat = torch.cat([flat, flat.new_zeros(8 - len(flat) % 8)])
    words = flat.view(torch.int64)
    hits = words.nonzero()[:, 0]
    within = words[hits].view(torch.uint8).reshape(-1, 8).nonzero()
    index = hits[within[:, 0]] * 8 + within[:, 1]
    return torch.stack(torch.unravel_index(index, mask.shape), 1)


def _counts(values: torch.Tensor) -> torch.Tensor:
    """int (N, ...) values 256 k + code for image k → int64 (N, 256) counts per image."""
    count = len(values)
    return torch.bincount(values.reshape(-1), minlength=256 * count).reshape(count, 256)


def _histograms(codes: torch.Tensor) -> torch.Tensor:
    """Integer (N, ...) codes in [0, 256) → int64 (N, 256) counts per image."""
    count = len(codes)
    offsets = 256 * torch.arange(count, dtype=torch.int32, device=codes.device)
    return _counts(codes.reshape(count, -1).to(torch.int32) + offsets[:, None])


def _compiled_pass_has_room(images: torch.Tensor, window_size: int, dtype: torch.dtype) -> bool:
    """Whether ``torch.compile`` can take one more shape for this call; warns (naming the
    limit and how to raise it) when it cannot, and the call runs the eager pass."""
    if lpq_fused.has_room(images, window_size, dtype):
        return True
    warnings.warn(
        "lpq(compile=True): torch.compile's limit of "
        f"{lpq_fused.shape_limit()} compiled shapes per function is "
        "reached in this process (one per image size, window size and dtype); this "
        "call runs the eager pass, with the same codes. Raise "
        "torch._dynamo.config.recompile_limit to compile more.",
        stacklevel=3,
    )
    return False


def _fused_pass(
    images: torch.Tensor,
    operators: tuple[torch.Tensor, torch.Tensor],
    dtype: torch.dtype,
    peak: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The compiled fast pass: int32 (N, H - n + 1, W - n + 1) codes offset by 256 per image
    (negative where some response is within its rounding bound of zero), and that doubt."""
    horizontal, vertical = (t.to(device=images.device, dtype=dtype) for t in operators)
    window_size = horizontal.shape[1]
    unit = torch.finfo(dtype).eps / 2
    # The fused loop's rounding bound (dwstft.lpq.fused), with the same two spare u.
    bound = ((4 * window_size + 6) * unit * peak).to(dtype)
    codes = lpq_fused.fused_codes(images, horizontal, vertical, bound)  # < 0: in doubt
    return codes, codes < 0


def _eager_pass(
    images: torch.Tensor, combined: torch.Tensor, dtype: torch.dtype, peak: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The eager fast pass with the (8, n, n) decorrelated filters ``combined``: uint8
    (N, H - n + 1, W - n + 1) codes, and where some response is within its rounding bound
    of zero (bool, same shape)."""
    window_size = combined.shape[-1]
    unit = torch.finfo(dtype).eps / 2
    # Each filter divided by its l1 norm: the signs do not change, and one rounding
    # bound then holds for all eight responses of an image.
    norms = combined.reshape(8, -1).abs().sum(1)
    weight = (combined / norms[:, None, None]).to(device=images.device, dtype=dtype)[:, None]
    # Rigorous bound on the convolution's rounding error: any summation order of its
    # k = n (n + 1) products (some with zero weights) errs by at most γ_k Σ|w||x| (γ_k =
    # ku / (1 - ku), u the unit roundoff), plus u Σ|w||x| each for rounding the weights
    # and the pixels to ``dtype``; Σ|w||x| <= max|x| here. Two more u cover γ_k's
    # denominator and rounding the bound itself.
    bound = ((window_size * (window_size + 1) + 4) * unit * peak).to(dtype)
    codes, unsure = _fast_codes(images, weight, bound)
    out_width = images.shape[2] - window_size + 1
    return codes[:, :, :out_width], unsure[:, :, :out_width]


def lpq(
    images: torch.Tensor,
    window_size: int = 7,
    decorrelate: bool = True,
    rho: float = 0.90,
    mode: str = "nh",
    *,
    compile: bool = False,
) -> torch.Tensor:
    """LPQ codes and histograms of a batch of greyscale images (conventions: module doc).

    Args:
        images: (N, H, W) or (N, 1, H, W), integer or floating point, any device;
            H, W >= window_size.
        window_size: n, odd, >= 3 (the reference's default is 3; 7 is common for faces).
        decorrelate: whiten the eight coefficients under the correlation model first.
        rho: correlation coefficient of neighbouring pixels in that model, in (0, 1).
        mode: ``"nh"`` normalised histogram, ``"h"`` histogram (counts), ``"im"`` codes.
        compile: compute the fast pass with one loop compiled by ``torch.compile``
            (``dwstft.lpq.fused``): the same codes, about 2.3× faster on a CPU, after one
            compilation per image size and window size in each process (12 s cold,
            3 s from Inductor's disk cache, on 2 cores; Inductor needs a C++ compiler on
            the CPU). At most ``dwstft.lpq.fused.MAX_IMAGES`` (8,388,607) images per call.

    Returns:
        ``"nh"``: float64 (N, 256) summing to 1 per image; ``"h"``: int64 (N, 256) counts;
        ``"im"``: uint8 (N, H - n + 1, W - n + 1) codes. On the images' device.
    """
    _check_arguments(window_size, decorrelate, rho, mode, compile)
    images = _as_batch(images, window_size)
    filters, transform, combined = _lpq_operators(window_size, decorrelate, float(rho))
    dtype = _fast_dtype(images.device)
    # max|x| per image, from the extremes in float64 (abs of int8's -128 would overflow).
    flat = images.reshape(len(images), -1)
    peak = torch.maximum(flat.amax(1).to(torch.float64), -flat.amin(1).to(torch.float64))
    compile = compile and _compiled_pass_has_room(images, window_size, dtype)
    if compile:
        operators = _separable_operators(window_size, decorrelate, float(rho))
        codes, unsure = _fused_pass(images, operators, dtype, peak)
    else:
        codes, unsure = _eager_pass(images, combined, dtype, peak)
    # Right wherever every |response| exceeds the bound; the others are recomputed.
    where = _rare_nonzero(unsure)
    if len(where):
        exact = _exact_codes(images, where, window_size, filters, transform)
        if compile:
            exact = exact + 256 * where[:, 0]
        codes[where[:, 0], where[:, 1], where[:, 2]] = exact.to(codes.dtype)
    if mode == "im":
        # uint8 keeps the code: the fused pass's offsets are multiples of 256.
        return codes.to(torch.uint8).contiguous()
    histogram = _counts(codes) if compile else _histograms(codes)
    if mode == "h":
        return histogram
    return histogram.to(torch.float64) / histogram.sum(1, keepdim=True)
