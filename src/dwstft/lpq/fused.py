"""The fast pass of ``dwstft.lpq`` as one fused loop, compiled by ``torch.compile``.

The eager fast pass (``descriptor._fast_codes``) is one oneDNN convolution with 8 n×n filters and
a few memory-bound passes over its responses. Here the same responses come from the
filters' separable form instead — every decorrelated LPQ filter is a sum of three outer
products ``vertical_m ⊗ horizontal_m`` with horizontal filters box, cos and sin
(``basis.separable_filters``) — and the comparisons follow in the same expression, so that
Inductor emits one loop that reads three horizontal passes and writes one int32 per pixel:
the code (offset by 256 per image, for one ``bincount`` of every histogram), negated where
some response lies within the rounding bound of zero. That is 3n + 24n
multiply-adds per pixel instead of 8n², and no response ever reaches memory. Written by
hand because no PyTorch operator expresses this fused filter-and-quantise step.

Rounding: horizontal pass m errs by at most (γ_n + 2u) A_m max|x| (A_m = Σ|h_m|, u the unit
roundoff, γ_k = ku / (1 - ku); 2u for rounding its weights and the pixels); the vertical
pass adds γ_{3n} Σ|v||h̃| and u Σ|v||h̃| for its own weights, in all at most
(4n + 3 + O(nu)) u S_i max|x| with S_i = Σ_{m,t} |v_i[m, t]| A_m, whatever the order of
the sums and whether a multiply-add rounds once (FMA) or twice. Each output's weights are
divided by S_i, so one bound ``(4n + 6) u max|x|`` holds for all eight (the spare u cover
the O(nu) terms and rounding the bound itself).

Each distinct chunk shape (images per chunk, height, width, n) compiles once per process
(12 s cold on 2 CPU cores, 3 s from Inductor's on-disk cache); chunks are padded to one
size so a batch compiles once.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch

from dwstft.nn.basis import separable_filters

#: Horizontal-pass bytes per chunk: small enough to stay in cache within the fused loop.
_CHUNK_BYTES = 4 << 20
#: Images per call: 256 × image index + code must fit an int32.
MAX_IMAGES = (2**31 - 1) // 256
#: The chunk shapes compiled in this process: torch.compile keeps at most
#: ``torch._dynamo.config.recompile_limit`` per function and runs the rest uncompiled.
_compiled_shapes: set[tuple[object, ...]] = set()


def separable_lpq_filters(
    window_size: int, transform: torch.Tensor, order: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The LPQ filters as sums of three outer products, float64 on the CPU.

    Args:
        window_size: n.
        transform: (8, 8) coefficient transform T (output i = Σ_k T[k, i] raw_k).
        order: the raw coefficients' positions in ``stft_basis`` (its maps 0..7 are Re, Im
            of v1 = [a, 0], v2 = [0, a], v3 = [a, a], v4 = [a, -a]).

    Returns:
        horizontal (3, n): box, cos, sin along the columns; vertical (8, 3, n): filter i is
        ``Σ_m vertical[i, m][:, None] * horizontal[m][None, :]`` (rows × columns), scaled
        so that ``Σ_{m,t} |vertical[i, m, t]| Σ|horizontal[m]| = 1``.
    """
    cos, sin = (torch.tensor(f, dtype=torch.float64) for f in separable_filters(window_size))
    ones = torch.ones(window_size, dtype=torch.float64)
    zeros = torch.zeros(window_size, dtype=torch.float64)
    horizontal = torch.stack([ones, cos, sin])
    # Vertical filters applied to the (box, cos, sin) horizontal passes, per basis map:
    # v1 = cos/sin rows on the box; v2 = box rows on cos/sin; v3, v4 = Re, Im of
    # (c_r + j s_r)(c_c ± j s_c) (the same products as ``separable.stft_maps_shift``).
    raw = torch.stack(
        [
            torch.stack([cos, zeros, zeros]),
            torch.stack([sin, zeros, zeros]),
            torch.stack([zeros, ones, zeros]),
            torch.stack([zeros, zeros, ones]),
            torch.stack([zeros, cos, -sin]),
            torch.stack([zeros, sin, cos]),
            torch.stack([zeros, cos, sin]),
            torch.stack([zeros, sin, -cos]),
        ]
    )[list(order)]
    vertical = torch.einsum("ki,kmt->imt", transform, raw)
    scale = (vertical.abs() * horizontal.abs().sum(1)[None, :, None]).sum((1, 2))
    return horizontal, vertical / scale[:, None, None]


def _codes_and_doubt(
    x: torch.Tensor,
    horizontal: torch.Tensor,
    vertical: torch.Tensor,
    bound: torch.Tensor,
    base: torch.Tensor,
    out: torch.Tensor,
) -> None:
    """(c, H, W) images (any real dtype, computed in the filters'), filters as in
    ``separable_lpq_filters``, (c, 1, 1) bounds and int32 bases → ``out``, int32
    (c, H - n + 1, W - n + 1): base + code, or -1 - (base + code) where some response is
    within the bound. One result, so that Inductor keeps every response in registers,
    written straight into ``out``."""
    n = horizontal.shape[1]
    out_height, out_width = x.shape[1] - n + 1, x.shape[2] - n + 1
    x = x.to(horizontal.dtype)
    passes = [
        sum(horizontal[m, t] * x[:, :, t : t + out_width] for t in range(n)) for m in range(3)
    ]
    value = base.expand(x.shape[0], out_height, out_width)
    doubt = torch.zeros_like(value, dtype=torch.bool)
    for i in range(8):
        response = sum(
            vertical[i, m, t] * passes[m][:, t : t + out_height] for m in range(3) for t in range(n)
        )
        value = value + ((response > bound).to(torch.int32) << i)
        doubt = doubt | (response.abs() <= bound)
    out.copy_(torch.where(doubt, -1 - value, value))


def _chunk_size(images: torch.Tensor, window_size: int, dtype: torch.dtype) -> int:
    """Images per compiled call: their horizontal passes fill ``_CHUNK_BYTES``."""
    batch, height, width = images.shape
    per_image = 3 * height * (width - window_size + 1) * torch.finfo(dtype).bits // 8
    return min(batch, max(1, _CHUNK_BYTES // per_image))


def _shape_key(images: torch.Tensor, window_size: int, dtype: torch.dtype) -> tuple[object, ...]:
    """What the compiled loop specialises on: chunk shape, window, dtypes, device."""
    step = _chunk_size(images, window_size, dtype)
    return (step, *images.shape[1:], window_size, images.dtype, dtype, images.device.type)


def shape_limit() -> int:
    """torch.compile's limit of compiled variants per function (``recompile_limit``)."""
    import torch._dynamo.config  # imported on demand: about a second

    return torch._dynamo.config.recompile_limit


def has_room(images: torch.Tensor, window_size: int, dtype: torch.dtype) -> bool:
    """Whether ``fused_codes`` of these images runs compiled: their shape is compiled
    already, or torch.compile's per-function limit leaves room for one more."""
    if _shape_key(images, window_size, dtype) in _compiled_shapes:
        return True
    return len(_compiled_shapes) < shape_limit()


@lru_cache(maxsize=1)
def _compiled() -> Callable[..., None]:
    """``torch.compile`` of the fused loop, made on first use (importing dynamo costs about
    a second, which ``import dwstft`` should not pay)."""
    # Contracted multiply-adds (FMA): one rounding instead of two, within the bound, and
    # the loop runs about 15% faster (Inductor leaves contraction off by default).
    options = {"cpp.enable_floating_point_contract_flag": "fast"}
    return torch.compile(_codes_and_doubt, dynamic=False, options=options)


def fused_codes(
    images: torch.Tensor,
    horizontal: torch.Tensor,
    vertical: torch.Tensor,
    bound: torch.Tensor,
) -> torch.Tensor:
    """Codes of (N, H, W) images, marked where in doubt, by the compiled fused loop.

    Args:
        images: (N, H, W), any real dtype; horizontal, vertical: ``separable_lpq_filters``
            in the dtype to compute in, on the images' device; bound: (N,) in that dtype,
            at least ``(4n + 6) u max|x|`` per image.

    Returns:
        int32 (N, H - n + 1, W - n + 1): 256 k + code for image k, ready for one
        ``bincount`` of all histograms, or -1 - (256 k + code) where some response is within
        the bound (there the code is not to be trusted).
    """
    batch, height, width = images.shape
    if batch > MAX_IMAGES:
        raise ValueError(
            f"lpq(compile=True) takes at most {MAX_IMAGES:,} images per call (its int32 "
            f"codes carry 256 × the image index), got {batch:,}; split the batch"
        )
    n = horizontal.shape[1]
    step = _chunk_size(images, n, horizontal.dtype)
    _compiled_shapes.add(_shape_key(images, n, horizontal.dtype))
    bases = 256 * torch.arange(batch, dtype=torch.int32, device=images.device)[:, None, None]
    result = images.new_empty(batch, height - n + 1, width - n + 1, dtype=torch.int32)
    # Grad mode is part of what torch.compile specialises on: one mode, one compilation.
    with torch.no_grad():
        for first in range(0, batch, step):
            chunk = images[first : first + step]
            limits = bound[first : first + step, None, None]
            base = bases[first : first + step]
            if len(chunk) == step:
                out = result[first : first + step]
                _compiled()(chunk, horizontal, vertical, limits, base, out)
                continue
            # The last chunk, padded to the compiled shape.
            missing = step - len(chunk)
            chunk = torch.cat([chunk, chunk.new_zeros(missing, height, width)])
            limits = torch.cat([limits, limits.new_zeros(missing, 1, 1)])
            base = torch.cat([base, base.new_zeros(missing, 1, 1)])
            scratch = torch.empty_like(result[:step])
            _compiled()(chunk, horizontal, vertical, limits, base, scratch)
            result[first:] = scratch[: step - missing]
    return result
