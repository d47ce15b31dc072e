"""The filter bank as separable 1-D shift-and-add passes.

Every 2-D STFT kernel is a sum of outer products ``row ⊗ column`` of three 1-D filters
of length n: box (all ones), cos and sin (``basis.separable_filters``). Eight of the nine
products suffice (all but box ⊗ box), so the 8 maps per channel cost 3 column passes and
8 row passes, 11·n multiply-adds per pixel instead of 8·n² for the direct bank.

In eager PyTorch each pass is a separate memory-bound kernel and this form is slower than
``conv2d``; under ``torch.compile`` Inductor fuses all the passes (and their autograd
adjoints) into a few loops that read the input once and write the maps once. Written by
hand because no PyTorch operator expresses this fused bank.

The maps come out frequency-major (channel ``m*C + c`` for map m = 2k + {0: Re, 1: Im}),
built with one ``torch.cat`` of 4-D tensors: the channel-major order would need a 5-D
stack and a view whose symbolic strides Inductor (torch 2.13) cannot order under dynamic
shapes. ``to_frequency_major`` permutes a pointwise weight to match.
"""

from __future__ import annotations

import functools
import operator

import torch
import torch.nn.functional as F

from dwstft.nn.basis import MAPS_PER_CHANNEL, separable_filters


def _taps(
    x: torch.Tensor, weights: tuple[float, ...], dim: int, out_len: int, stride: int
) -> torch.Tensor:
    """Correlate along ``dim`` (-2 rows, -1 columns): out[o] = sum_i w[i] x[o*stride + i]."""
    span = (out_len - 1) * stride + 1
    terms = []
    for i, w in enumerate(weights):
        if w == 0.0:
            continue
        t = x.narrow(dim, i, span)
        if stride > 1:
            t = t[..., ::stride, :] if dim == -2 else t[..., ::stride]
        terms.append(t if w == 1.0 else w * t)
    return functools.reduce(operator.add, terms)


def stft_maps_shift(x: torch.Tensor, kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    """Depthwise-STFT maps by separable shift-and-add, frequency-major.

    Args:
        x: (N, C, H, W).
        kernel_size: n (odd); stride, padding: ints, as in ``conv2d``.

    Returns:
        (N, 8C, H_out, W_out) with channel ``m*C + c`` equal (up to rounding) to channel
        ``c*8 + m`` of ``depthwise_stft``.
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
    return torch.cat(
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
        dim=1,
    )


def to_frequency_major(weight: torch.Tensor) -> torch.Tensor:
    """Permute a pointwise weight (F, 8C, 1, 1) from input order ``c*8 + m`` to
    ``m*C + c``, the order of ``stft_maps_shift``."""
    out_channels, c8 = weight.shape[:2]
    channels = c8 // MAPS_PER_CHANNEL
    w = weight.reshape(out_channels, channels, MAPS_PER_CHANNEL).transpose(1, 2)
    return w.reshape(out_channels, c8, 1, 1)
