"""Functional Depthwise-STFT and Depthwise-STFT separable convolution, with every
execution path behind one function.

Paths of ``stft_separable`` (all compute the same function; see docs/architecture.md for
the benchmark behind ``"auto"``):

``"grouped"``
    ``conv2d`` with the bank repeated per channel (``groups=C``) → 8C maps, then the 1×1.
    The textbook form; autograd keeps the 8C maps for backward.
``"folded"``
    One dense n×n ``conv2d`` with the kernel ``sum_k W[:, c*8+k] * B_k`` built from the
    pointwise weight (differentiable w.r.t. it). n²·C·F multiply-adds instead of
    8·C·F + 8·C·n², but one highly tuned kernel, and the 8C maps never exist.
``"recompute"``
    A custom autograd Function: forward as ``"grouped"`` but saving only the input; the
    backward recomputes the maps. Training memory does not grow by the 8C intermediate.
``"shift"``
    The bank as separable shift-and-add passes (``dwstft.separable``) then the 1×1,
    inside ``torch.utils.checkpoint`` so only the input is saved. Slow in eager; under
    ``torch.compile`` Inductor fuses the passes and the partitioner recomputes them in
    backward, but it compiles slowly, so ``"auto"`` never picks it. (A custom autograd
    Function does not keep its memory saving under compile: AOTAutograd traces its
    forward and backward together and saves the shared maps.)

``"auto"`` picks per call with ``choose_impl``.
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from dwstft.basis import MAPS_PER_CHANNEL, check_kernel_size, stft_basis
from dwstft.separable import stft_maps_shift, to_frequency_major

IMPLS = ("auto", "grouped", "folded", "recompute", "shift")


def resolve_padding(padding: str | int, kernel_size: int) -> int:
    """Padding on each side in pixels: ``"same"`` → n // 2 (size-preserving at stride 1,
    ceil(H / stride) rows otherwise), ``"valid"`` → 0, or a non-negative int."""
    if padding == "same":
        return kernel_size // 2
    if padding == "valid":
        return 0
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be 'same', 'valid' or an int >= 0, got {padding!r}")
    return padding


def check_positive(name: str, value: object) -> int:
    """Validate a positive int argument (channels, stride); returns it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_impl(impl: object) -> str:
    """Validate an execution-path name (one of ``IMPLS``); returns it."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    return impl


def is_symbolic(x: object) -> bool:
    """Whether ``x`` is being recorded by ``torch.jit.trace`` or ``torch.fx.symbolic_trace``,
    so that its shape, dtype and ``requires_grad`` are not concrete values to branch on."""
    return torch.jit.is_tracing() or isinstance(x, torch.fx.Proxy)


def check_input(x: torch.Tensor, in_channels: int | None = None) -> None:
    """Raise ValueError unless ``x`` is a 4-D (N, C, H, W) real floating-point tensor with
    C == in_channels. Every execution path checks this the same way: integer, boolean and
    complex inputs are refused rather than silently cast or truncated.

    Skipped while ``torch.jit.trace`` or ``torch.fx.symbolic_trace`` records (shapes are
    then symbolic)."""
    if is_symbolic(x):
        return
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"input must be a torch.Tensor (N, C, H, W), got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(
            f"input must be a real floating-point tensor (float16/bfloat16/float32/float64), "
            f"got dtype {x.dtype}; convert it first, e.g. x.float()"
        )
    if x.dim() != 4:
        raise ValueError(
            f"input must be 4-D (N, C, H, W), got {x.dim()}-D with shape {tuple(x.shape)}"
        )
    if in_channels is not None and x.shape[1] != in_channels:
        raise ValueError(
            f"input has {x.shape[1]} channels (shape {tuple(x.shape)}), "
            f"expected in_channels={in_channels}"
        )


def _check_weight(weight: torch.Tensor, in_channels: int) -> None:
    if is_symbolic(weight):
        return
    expected = MAPS_PER_CHANNEL * in_channels
    if weight.dim() != 4 or weight.shape[1] != expected or weight.shape[2:] != (1, 1):
        raise ValueError(
            f"weight must have shape (F, {expected}, 1, 1) for {in_channels} input "
            f"channels, got {tuple(weight.shape)}"
        )


def _basis_for(x: torch.Tensor, kernel_size: int, basis: torch.Tensor | None) -> torch.Tensor:
    if basis is None:
        return stft_basis(kernel_size, dtype=x.dtype, device=x.device)
    return basis.to(device=x.device, dtype=x.dtype)


def _bank(basis: torch.Tensor, channels: int) -> torch.Tensor:
    """(8, n, n) → (8C, 1, n, n) grouped-conv weight, output channel c*8 + k."""
    return basis.repeat(channels, 1, 1).unsqueeze(1)


def _maps(x: torch.Tensor, basis: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """(N, C, H, W) → (N, 8C, H_out, W_out) by grouped conv, channel c*8 + k."""
    return F.conv2d(x, _bank(basis, x.shape[1]), None, stride, padding, 1, x.shape[1])


def depthwise_stft(
    x: torch.Tensor,
    kernel_size: int = 3,
    stride: int = 1,
    padding: str | int = "same",
    *,
    basis: torch.Tensor | None = None,
) -> torch.Tensor:
    """Depthwise-STFT of Eq. 2 for every channel.

    Args:
        x: (N, C, H, W) real input.
        kernel_size: neighbourhood size n (odd, >= 3).
        stride, padding: as ``conv2d``; ``"same"`` pads n // 2 zeros on each side.
        basis: optional precomputed ``stft_basis(n)`` (the layers pass their buffer).

    Returns:
        (N, 8C, H_out, W_out): channel ``c*8 + 2k`` is Re F(v_{k+1}), ``c*8 + 2k + 1`` is
        Im F(v_{k+1}).
    """
    n = check_kernel_size(kernel_size)
    check_input(x)
    stride = check_positive("stride", stride)
    pad = resolve_padding(padding, n)
    return _maps(x, _basis_for(x, n, basis), stride, pad)


def fold_weight(weight: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Fold a pointwise weight into one dense kernel.

    Args:
        weight: (F, 8C, 1, 1) or (F, 8C) pointwise weight.
        basis: (8, n, n) from ``stft_basis``.

    Returns:
        (F, C, n, n) with ``K[f, c] = sum_k weight[f, c*8 + k] * basis[k]``.
    """
    if not is_symbolic(weight) and weight.shape[1] % MAPS_PER_CHANNEL:
        raise ValueError(
            f"weight has {weight.shape[1]} input channels, "
            f"expected a multiple of {MAPS_PER_CHANNEL}"
        )
    return fold_weight_unchecked(weight, basis)


def fold_weight_unchecked(weight: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``fold_weight`` without validation (TorchScript-compatible)."""
    w = weight.reshape(weight.shape[0], weight.shape[1] // 8, 8)
    return torch.einsum("fck,kij->fcij", w, basis.to(w.dtype))


class _RecomputeSTFTSeparable(torch.autograd.Function):
    """Depthwise-STFT then 1×1, saving only (x, weight) for backward.

    The backward recomputes the 8C maps (cheap: a fixed filter bank) instead of keeping
    them alive between forward and backward.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, basis, stride, padding):
        maps = _maps(x, basis, stride, padding)
        ctx.save_for_backward(x, weight, basis)
        ctx.conf = (stride, padding, bias is not None)
        return F.conv2d(maps, weight.to(maps.dtype), None if bias is None else bias.to(maps.dtype))

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, basis = ctx.saved_tensors
        stride, padding, has_bias = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        # Under autocast the forward ran in grad_out's dtype; recompute in that dtype.
        dtype = grad_out.dtype
        basis_d = basis.to(dtype)
        maps = _maps(x.to(dtype), basis_d, stride, padding)
        grad_maps, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_out,
            maps,
            weight.to(dtype),
            [weight.shape[0]] if has_bias else None,
            [1, 1],
            [0, 0],
            [1, 1],
            False,
            [0, 0],
            1,
            [need_x, need_w, need_b and has_bias],
        )
        grad_x = None
        if need_x:
            bank = _bank(basis_d, x.shape[1])
            grad_x = torch.nn.grad.conv2d_input(
                x.shape, bank, grad_maps, stride, padding, 1, x.shape[1]
            ).to(x.dtype)
        if grad_w is not None:
            grad_w = grad_w.to(weight.dtype)
        if grad_b is not None:
            grad_b = grad_b.to(weight.dtype)
        return grad_x, grad_w, grad_b, None, None, None


def _shift_separable(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_size: int,
    stride: int,
    padding: int,
) -> torch.Tensor:
    maps = stft_maps_shift(x, kernel_size, stride, padding)
    return F.conv2d(maps, to_frequency_major(weight), bias)


def choose_impl(kernel_size: int, needs_grad: bool, compiling: bool) -> str:
    """The path ``impl="auto"`` takes, from ``dwstft bench layer`` and ``dwstft bench
    compile`` on a 2-core x86 CPU.

    - n = 3: ``"folded"``. 9·C·F multiply-adds in one dense conv beat 8·C·F in a 1×1
      plus a separate bank pass, forward and backward, and only the input is saved.
    - n >= 5, training, eager: ``"recompute"`` (saves only the input, as required to stay
      below a depthwise-separable layer's memory).
    - n >= 5, training, traced by ``torch.compile``: ``"folded"``. A custom autograd
      Function loses its saving under compile, and of the paths that keep it, the folded
      conv compiled 2.5x faster than the fused shift-and-add bank and ran 1.6x faster
      (docs/architecture.md).
    - n >= 5, inference: ``"grouped"`` (no memory to save; 8·C·(F + n²) beats n²·C·F).
    """
    if kernel_size == 3:
        return "folded"
    if not needs_grad:
        return "grouped"
    return "folded" if compiling else "recompute"


def stft_separable(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    kernel_size: int = 3,
    stride: int = 1,
    padding: str | int = "same",
    *,
    impl: str = "auto",
    basis: torch.Tensor | None = None,
) -> torch.Tensor:
    """Depthwise-STFT separable convolution: ``conv2d(depthwise_stft(x), weight, bias)``.

    Args:
        x: (N, C, H, W).
        weight: (F, 8C, 1, 1) pointwise weight.
        bias: (F,) or None.
        kernel_size, stride, padding: of the STFT neighbourhood, as in ``depthwise_stft``.
        impl: one of ``IMPLS`` (see the module docstring).
        basis: optional precomputed ``stft_basis(n)``.

    Returns:
        (N, F, H_out, W_out).
    """
    n = check_kernel_size(kernel_size)
    stride = check_positive("stride", stride)
    pad = resolve_padding(padding, n)
    check_impl(impl)
    check_input(x)
    _check_weight(weight, x.shape[1])
    basis = _basis_for(x, n, basis)
    if impl == "auto" and isinstance(x, torch.fx.Proxy):
        # symbolic_trace records one graph for every later call: plain operators only.
        impl = choose_impl(n, needs_grad=False, compiling=False)
    elif impl == "auto":
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
        )
        impl = choose_impl(n, needs_grad, torch.compiler.is_compiling())
    if impl == "folded":
        return F.conv2d(x, fold_weight(weight, basis), bias, stride, pad)
    if impl == "grouped":
        return F.conv2d(_maps(x, basis, stride, pad), weight, bias)
    if impl == "shift":
        return checkpoint(_shift_separable, x, weight, bias, n, stride, pad, use_reentrant=False)
    return _RecomputeSTFTSeparable.apply(x, weight, bias, basis, stride, pad)
