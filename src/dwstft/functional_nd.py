"""Functional 1-D and 3-D Depthwise-STFT and Depthwise-STFT separable convolution, every
execution path behind one function (the N-D counterpart of ``dwstft.functional``).

Inputs are (N, C, L) for 1-D and (N, C, T, H, W) for 3-D; the number of spatial dimensions
is read from the input. Paths of ``stft_separable_nd`` (all compute the same function; the
benchmark behind ``"auto"`` is in docs/family.md):

``"grouped"``
    The bank (M maps per channel) → M·C maps, then the 1×…×1 pointwise convolution.
    Autograd keeps the M·C maps for backward.
``"folded"``
    One dense convolution with the kernel ``sum_m W[:, c*M+m] * B_m`` built from the
    pointwise weight (differentiable w.r.t. it); the maps never exist.
``"recompute"``
    A custom autograd Function: forward as ``"grouped"`` but saving only the input and the
    weights; backward recomputes the maps.
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F

from dwstft.basis_nd import check_kernel_size_nd, maps_per_channel, stft_basis_nd
from dwstft.functional import is_symbolic

IMPLS_ND = ("auto", "grouped", "folded", "recompute")
#: Spatial dimensions of the family's layers (2-D lives in ``dwstft.functional``).
SPATIAL_DIMS = (1, 3)
_LAYOUTS = {1: "(N, C, L)", 3: "(N, C, T, H, W)"}


def conv_nd(dims: int):
    """``F.conv1d`` or ``F.conv3d`` for 1 or 3 spatial dimensions."""
    return F.conv1d if dims == 1 else F.conv3d


def check_positive(name: str, value: object) -> int:
    """Validate a positive int argument (channels); returns it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_impl_nd(impl: object) -> str:
    """Validate an execution-path name (one of ``IMPLS_ND``); returns it."""
    if impl not in IMPLS_ND:
        raise ValueError(f"impl must be one of {IMPLS_ND}, got {impl!r}")
    return impl


def check_stride_nd(stride: object, dims: int) -> tuple[int, ...]:
    """A positive int or a tuple of ``dims`` positive ints → the tuple."""
    strides = tuple(stride) if isinstance(stride, (tuple, list)) else (stride,) * dims
    if len(strides) != dims or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in strides
    ):
        raise ValueError(
            f"stride must be a positive int or a tuple of {dims} positive ints, got {stride!r}"
        )
    return strides


def resolve_padding_nd(padding: object, kernel_size: tuple[int, ...]) -> tuple[int, ...]:
    """Zeros added on each side, per dimension: ``"same"`` → n_i // 2 (size-preserving at
    stride 1, ceil(size / stride) otherwise), ``"valid"`` → 0, an int >= 0, or a tuple of
    one int >= 0 per dimension."""
    dims = len(kernel_size)
    if padding == "same":
        return tuple(n // 2 for n in kernel_size)
    if padding == "valid":
        return (0,) * dims
    pads = tuple(padding) if isinstance(padding, (tuple, list)) else (padding,) * dims
    if len(pads) != dims or any(
        isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in pads
    ):
        raise ValueError(
            f"padding must be 'same', 'valid', an int >= 0 or a tuple of {dims} ints >= 0, "
            f"got {padding!r}"
        )
    return pads


def input_dims(x: object, kernel_size: object = None) -> int:
    """Spatial dimensions of ``x`` (1 or 3); raises ValueError for anything else. While
    ``torch.fx`` records, ``x`` has no concrete shape: a per-dimension ``kernel_size``
    tuple (what the layers pass) tells instead."""
    if isinstance(x, torch.fx.Proxy) and isinstance(kernel_size, tuple):
        return len(kernel_size)
    if not isinstance(x, torch.Tensor):
        raise ValueError(
            f"input must be a torch.Tensor (N, C, L) or (N, C, T, H, W), got {type(x).__name__}"
        )
    dims = x.dim() - 2
    if dims not in SPATIAL_DIMS:
        raise ValueError(
            f"input must be 3-D (N, C, L) or 5-D (N, C, T, H, W), got {x.dim()}-D with shape "
            f"{tuple(x.shape)} (4-D images: dwstft.functional)"
        )
    return dims


def check_input_nd(x: torch.Tensor, dims: int, in_channels: int | None = None) -> None:
    """Raise ValueError unless ``x`` is a floating-point (N, C, *spatial) tensor with
    ``dims`` spatial dimensions and C == in_channels. Skipped while ``torch.jit.trace`` or
    ``torch.fx.symbolic_trace`` records."""
    if is_symbolic(x):
        return
    if not isinstance(x, torch.Tensor) or x.dim() != dims + 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"input must be {dims + 2}-D {_LAYOUTS[dims]}, got {shape}")
    if not x.is_floating_point():
        raise ValueError(
            f"input must be a floating-point tensor (float64, float32, bfloat16, float16), "
            f"got {x.dtype}; convert it first, e.g. x.float()"
        )
    if in_channels is not None and x.shape[1] != in_channels:
        raise ValueError(
            f"input has {x.shape[1]} channels (shape {tuple(x.shape)}), "
            f"expected in_channels={in_channels}"
        )


def _check_weight(weight: torch.Tensor, in_channels: int, maps: int, dims: int) -> None:
    if is_symbolic(weight):
        return
    expected = maps * in_channels
    if (
        weight.dim() != dims + 2
        or weight.shape[1] != expected
        or any(s != 1 for s in weight.shape[2:])
    ):
        ones = ", ".join("1" * dims)
        raise ValueError(
            f"weight must have shape (F, {expected}, {ones}) for {in_channels} input "
            f"channels and {maps} maps per channel, got {tuple(weight.shape)}"
        )


def _basis_for(
    x: torch.Tensor, kernel_size: tuple[int, ...], basis: torch.Tensor | None
) -> torch.Tensor:
    if basis is None:
        return stft_basis_nd(kernel_size, dtype=x.dtype, device=x.device)
    return basis.to(device=x.device, dtype=x.dtype)


def stft_maps_nd(
    x: torch.Tensor, basis: torch.Tensor, stride: tuple[int, ...], padding: tuple[int, ...]
) -> torch.Tensor:
    """(N, C, *s) → (N, M·C, *s_out), channel c*M + m.

    Runs the bank as one convolution of the N·C channels viewed as a batch of
    single-channel signals with M output maps: measured 1.2-1.7× faster on CPU than the
    equivalent grouped convolution (``groups=C``) for 3×3×3 and 5×5×5 kernels
    (docs/family.md)."""
    batch, channels = x.shape[:2]
    conv = conv_nd(x.dim() - 2)
    single = x.reshape(batch * channels, 1, *x.shape[2:])
    maps = conv(single, basis.unsqueeze(1), None, stride, padding)
    return maps.reshape(batch, channels * basis.shape[0], *maps.shape[2:])


def depthwise_stft_nd(
    x: torch.Tensor,
    kernel_size: int | tuple[int, ...] = 3,
    stride: int | tuple[int, ...] = 1,
    padding: str | int | tuple[int, ...] = "same",
    *,
    basis: torch.Tensor | None = None,
) -> torch.Tensor:
    """The local Fourier transform of every channel at the lowest frequency points.

    Args:
        x: (N, C, L) or (N, C, T, H, W), floating point.
        kernel_size: n (odd) or one odd size per dimension (see ``dwstft.basis_nd``).
        stride, padding: as ``conv1d`` / ``conv3d``; ``"same"`` pads n_i // 2 zeros.
        basis: optional precomputed ``stft_basis_nd(kernel_size)`` (the layers pass theirs).

    Returns:
        (N, M·C, *out): channel ``c*M + 2p`` is Re F(v_{p+1}), ``c*M + 2p + 1`` is Im, with
        M = 2 (1-D), 26 (n×n×n), 8 (1×n×n) or 2 (n×1×1) maps per channel.
    """
    dims = input_dims(x, kernel_size)
    sizes = check_kernel_size_nd(kernel_size, dims)
    check_input_nd(x, dims)
    strides = check_stride_nd(stride, dims)
    pads = resolve_padding_nd(padding, sizes)
    return stft_maps_nd(x, _basis_for(x, sizes, basis), strides, pads)


def fold_weight_nd(weight: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Fold a pointwise weight into one dense kernel.

    Args:
        weight: (F, M·C, 1, ...) or (F, M·C) pointwise weight.
        basis: (M, *k) from ``stft_basis_nd``.

    Returns:
        (F, C, *k) with ``K[f, c] = sum_m weight[f, c*M + m] * basis[m]``.
    """
    maps = basis.shape[0]
    if not is_symbolic(weight) and weight.shape[1] % maps:
        raise ValueError(
            f"weight has {weight.shape[1]} input channels, expected a multiple of {maps}"
        )
    return fold_weight_nd_unchecked(weight, basis)


def fold_weight_nd_unchecked(weight: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``fold_weight_nd`` without validation (TorchScript-compatible)."""
    maps = basis.shape[0]
    w = weight.reshape(weight.shape[0], weight.shape[1] // maps, maps)
    # One contraction over the maps; no Python loop over the shape, so torch.fx records it.
    return torch.tensordot(w, basis.to(w.dtype), dims=([2], [0]))


class _RecomputeSTFTSeparableNd(torch.autograd.Function):
    """Depthwise-STFT then 1×…×1, saving only (x, weight, basis) for backward; the backward
    recomputes the M·C maps instead of keeping them alive between forward and backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, basis, stride, padding):
        maps = stft_maps_nd(x, basis, stride, padding)
        ctx.save_for_backward(x, weight, basis)
        ctx.conf = (stride, padding, bias is not None)
        conv = conv_nd(x.dim() - 2)
        return conv(maps, weight.to(maps.dtype), None if bias is None else bias.to(maps.dtype))

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, basis = ctx.saved_tensors
        stride, padding, has_bias = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dims = x.dim() - 2
        ones, zeros = [1] * dims, [0] * dims
        # Under autocast the forward ran in grad_out's dtype; recompute in that dtype.
        dtype = grad_out.dtype
        basis_d = basis.to(dtype)
        x_d = x.to(dtype)
        maps = stft_maps_nd(x_d, basis_d, stride, padding)
        grad_maps, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_out,
            maps,
            weight.to(dtype),
            [weight.shape[0]] if has_bias else None,
            ones,
            zeros,
            ones,
            False,
            zeros,
            1,
            [need_x, need_w, need_b and has_bias],
        )
        grad_x = None
        if need_x:
            batch, channels = x.shape[:2]
            grad_single = torch.ops.aten.convolution_backward(
                grad_maps.reshape(batch * channels, basis.shape[0], *grad_maps.shape[2:]),
                x_d.reshape(batch * channels, 1, *x.shape[2:]),
                basis_d.unsqueeze(1),
                None,
                list(stride),
                list(padding),
                ones,
                False,
                zeros,
                1,
                [True, False, False],
            )[0]
            grad_x = grad_single.reshape(x.shape).to(x.dtype)
        if grad_w is not None:
            grad_w = grad_w.to(weight.dtype)
        if grad_b is not None:
            grad_b = grad_b.to(weight.dtype)
        return grad_x, grad_w, grad_b, None, None, None


#: Largest 1-D kernel for which the folded convolution is the fastest path, in training
#: and in inference (``dwstft bench layer --dims 1``, docs/family.md).
FOLDED_MAX_1D_TRAIN = 13
FOLDED_MAX_1D_INFERENCE = 25


def choose_impl_nd(kernel_size: tuple[int, ...], needs_grad: bool) -> str:
    """The path ``impl="auto"`` takes, from ``dwstft bench layer --dims 1|3`` on a 2-core
    x86 CPU (numbers in docs/family.md).

    - 3-D: ``"folded"`` for every kernel (1×3×3 to 7×7×7): one dense ``conv3d`` beats the
      bank plus the pointwise product over 26·C maps, whose memory traffic dominates,
      forward and backward, and it saves only the input.
    - 1-D: ``"folded"`` up to n = 13 in training and n = 25 in inference; beyond,
      ``"recompute"`` (training) or ``"grouped"`` (inference), whose cost does not grow
      with n.
    """
    if len(kernel_size) == 3:
        return "folded"
    limit = FOLDED_MAX_1D_TRAIN if needs_grad else FOLDED_MAX_1D_INFERENCE
    if kernel_size[0] <= limit:
        return "folded"
    return "recompute" if needs_grad else "grouped"


def stft_separable_nd(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    kernel_size: int | tuple[int, ...] = 3,
    stride: int | tuple[int, ...] = 1,
    padding: str | int | tuple[int, ...] = "same",
    *,
    impl: str = "auto",
    basis: torch.Tensor | None = None,
) -> torch.Tensor:
    """Depthwise-STFT separable convolution: ``conv(depthwise_stft_nd(x), weight, bias)``.

    Args:
        x: (N, C, L) or (N, C, T, H, W), floating point.
        weight: (F, M·C, 1) or (F, M·C, 1, 1, 1) pointwise weight.
        bias: (F,) or None.
        kernel_size, stride, padding: of the STFT neighbourhood, as in ``depthwise_stft_nd``.
        impl: one of ``IMPLS_ND`` (see the module docstring).
        basis: optional precomputed ``stft_basis_nd(kernel_size)``.

    Returns:
        (N, F, *out).
    """
    dims = input_dims(x, kernel_size)
    sizes = check_kernel_size_nd(kernel_size, dims)
    strides = check_stride_nd(stride, dims)
    pads = resolve_padding_nd(padding, sizes)
    check_impl_nd(impl)
    check_input_nd(x, dims)
    _check_weight(weight, x.shape[1], maps_per_channel(sizes), dims)
    basis = _basis_for(x, sizes, basis)
    if impl == "auto" and isinstance(x, torch.fx.Proxy):
        # symbolic_trace records one graph for every later call: plain operators only.
        impl = choose_impl_nd(sizes, needs_grad=False)
    elif impl == "auto":
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
        )
        impl = choose_impl_nd(sizes, needs_grad)
    conv = conv_nd(dims)
    if impl == "folded":
        return conv(x, fold_weight_nd(weight, basis), bias, strides, pads)
    if impl == "grouped":
        return conv(stft_maps_nd(x, basis, strides, pads), weight, bias)
    return _RecomputeSTFTSeparableNd.apply(x, weight, bias, basis, strides, pads)
