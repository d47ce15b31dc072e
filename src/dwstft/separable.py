"""The filter bank as separable 1-D shift-and-add passes, and its exact adjoint.

Every STFT kernel is a sum of outer products ``row ⊗ column`` of three 1-D filters of
length n: box (all ones), cos and sin (``basis.separable_filters``). Eight of the nine
products suffice (all but box ⊗ box), so the 8 maps per channel cost 3 column passes and
8 row passes, 11·n multiply-adds per pixel instead of 8·n² for the direct bank.

In eager PyTorch each pass is a separate memory-bound kernel and this form is slower than
``conv2d``; under ``torch.compile`` Inductor fuses all the passes into one loop that reads
the input once and writes the maps once, which is the fastest CPU form for n >= 5.
Written by hand because no PyTorch operator expresses this fused bank.
"""

from __future__ import annotations

import functools
import operator

import torch
import torch.nn.functional as F

from dwstft.basis import separable_filters


def _weighted_sum(slices: list[tuple[float, torch.Tensor]]) -> torch.Tensor:
    terms = [t if w == 1.0 else w * t for w, t in slices if w != 0.0]
    return functools.reduce(operator.add, terms)


def _taps(
    x: torch.Tensor, weights: tuple[float, ...], dim: int, out_len: int, stride: int
) -> torch.Tensor:
    """Correlate along ``dim`` (-2 rows, -1 columns): out[o] = sum_i w[i] x[o*stride + i]."""
    span = (out_len - 1) * stride + 1
    slices = [(w, x.narrow(dim, i, span)) for i, w in enumerate(weights)]
    if stride > 1:
        index = [slice(None)] * x.dim()
        index[dim] = slice(None, None, stride)
        slices = [(w, t[tuple(index)]) for w, t in slices]
    return _weighted_sum(slices)


def stft_maps_shift(x: torch.Tensor, kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    """Depthwise-STFT maps by separable shift-and-add.

    Args:
        x: (N, C, H, W).
        kernel_size: n (odd); stride, padding: ints, as in ``conv2d``.

    Returns:
        (N, 8C, H_out, W_out), channel ``c*8 + 2k + {0: Re, 1: Im}`` for frequency v_{k+1},
        identical (up to rounding) to ``conv2d`` with ``stft_basis``.
    """
    n = kernel_size
    cos, sin = separable_filters(n)
    box = (1.0,) * n
    xp = F.pad(x, (padding, padding, padding, padding)) if padding else x
    h_out = (xp.shape[-2] - n) // stride + 1
    w_out = (xp.shape[-1] - n) // stride + 1
    col_box = _taps(xp, box, -1, w_out, stride)
    col_cos = _taps(xp, cos, -1, w_out, stride)
    col_sin = _taps(xp, sin, -1, w_out, stride)

    def rows(t: torch.Tensor, w: tuple[float, ...]) -> torch.Tensor:
        return _taps(t, w, -2, h_out, stride)

    cc, ss = rows(col_cos, cos), rows(col_sin, sin)
    sc, cs = rows(col_cos, sin), rows(col_sin, cos)
    maps = torch.stack(
        [
            rows(col_box, cos),  # Re v1 = cos_row ⊗ box_col
            rows(col_box, sin),  # Im v1
            rows(col_cos, box),  # Re v2 = box_row ⊗ cos_col
            rows(col_sin, box),  # Im v2
            cc - ss,  # Re v3: Re[(c_r + j s_r)(c_c + j s_c)]
            sc + cs,  # Im v3
            cc + ss,  # Re v4: Re[(c_r + j s_r)(c_c - j s_c)]
            sc - cs,  # Im v4
        ],
        dim=2,
    )
    return maps.flatten(1, 2)


def _taps_adjoint(
    g: torch.Tensor, weights: tuple[float, ...], dim: int, in_len: int, stride: int
) -> torch.Tensor:
    """Adjoint of ``_taps``: (.., out_len) along ``dim`` → (.., in_len)."""
    n = len(weights)
    if stride > 1:
        shape = list(g.shape)
        shape[dim] = (g.shape[dim] - 1) * stride + 1
        dilated = g.new_zeros(shape)
        index = [slice(None)] * g.dim()
        index[dim] = slice(None, None, stride)
        dilated[tuple(index)] = g
        g = dilated
    pad = [0, 0, 0, 0]
    side = 0 if dim == -1 else 2
    pad[side], pad[side + 1] = n - 1, in_len - g.shape[dim]
    gp = F.pad(g, pad)
    return _weighted_sum([(w, gp.narrow(dim, n - 1 - i, in_len)) for i, w in enumerate(weights)])


def stft_maps_shift_adjoint(
    grad_maps: torch.Tensor, input_hw: tuple[int, int], kernel_size: int, stride: int, padding: int
) -> torch.Tensor:
    """Gradient of ``stft_maps_shift`` w.r.t. its input.

    Args:
        grad_maps: (N, 8C, H_out, W_out).
        input_hw: (H, W) of the original input.

    Returns:
        (N, C, H, W).
    """
    n = kernel_size
    cos, sin = separable_filters(n)
    box = (1.0,) * n
    height, width = input_hw
    hp, wp = height + 2 * padding, width + 2 * padding
    g = grad_maps.unflatten(1, (grad_maps.shape[1] // 8, 8)).unbind(2)

    def rows_t(t: torch.Tensor, w: tuple[float, ...]) -> torch.Tensor:
        return _taps_adjoint(t, w, -2, hp, stride)

    def cols_t(t: torch.Tensor, w: tuple[float, ...]) -> torch.Tensor:
        return _taps_adjoint(t, w, -1, wp, stride)

    grad_cc, grad_ss = g[4] + g[6], g[6] - g[4]
    grad_sc, grad_cs = g[5] + g[7], g[5] - g[7]
    col_box = rows_t(g[0], cos) + rows_t(g[1], sin)
    col_cos = rows_t(g[2], box) + rows_t(grad_cc, cos) + rows_t(grad_sc, sin)
    col_sin = rows_t(g[3], box) + rows_t(grad_ss, sin) + rows_t(grad_cs, cos)
    grad_xp = cols_t(col_box, box) + cols_t(col_cos, cos) + cols_t(col_sin, sin)
    if padding:
        grad_xp = grad_xp[..., padding : padding + height, padding : padding + width]
    return grad_xp
