"""Functional Depthwise-STFT and Depthwise-STFT separable convolution for 1, 2 and 3
spatial dimensions, every execution path behind one function (``separable``).

Inputs are (N, C, L), (N, C, H, W) or (N, C, T, H, W). The public front ends keep their
contracts: ``depthwise_stft`` / ``stft_separable`` take 2-D images and a square kernel
(int n), ``depthwise_stft_nd`` / ``stft_separable_nd`` read 1 or 3 dimensions from the input
and take per-dimension sizes. Paths (all compute the same function; the benchmarks behind
``"auto"`` are in docs/architecture.md and docs/family.md):

``"grouped"``
    The bank (M maps per channel: 8 in 2-D) → M·C maps, then the 1×…×1 pointwise
    convolution. The textbook form; autograd keeps the M·C maps for backward.
``"folded"``
    One dense convolution with the kernel ``sum_m W[:, c*M+m] * B_m`` built from the
    pointwise weight (differentiable w.r.t. it). n²·C·F multiply-adds instead of
    8·C·F + 8·C·n² in 2-D, but one highly tuned kernel, and the maps never exist.
``"recompute"``
    A custom autograd Function: forward as ``"grouped"`` but saving only the input and the
    weights; the backward recomputes the maps. Training memory does not grow by the M·C
    intermediate.
``"shift"`` (2-D only)
    The bank as separable shift-and-add passes (``dwstft.nn.separable``) then the 1×1,
    inside ``torch.utils.checkpoint`` so only the input is saved. Slow in eager; under
    ``torch.compile`` Inductor fuses the passes and the partitioner recomputes them in
    backward, but it compiles slowly, so ``"auto"`` never picks it. (A custom autograd
    Function does not keep its memory saving under compile: AOTAutograd traces its
    forward and backward together and saves the shared maps.)

``"auto"`` is decided in one function, ``choose_impl``, which every caller reaches through
``resolve_impl``: these functions, the layers in training and evaluation mode, the
multi-scale layer and ``torch.fx`` tracing.
"""

from __future__ import annotations

import torch
import torch.fx
from torch.utils.checkpoint import checkpoint

from dwstft.nn import paths
from dwstft.nn.basis import check_kernel_size_nd, maps_per_channel, stft_basis_nd
from dwstft.nn.paths import conv_nd

IMPLS = ("auto", "grouped", "folded", "recompute", "shift")
#: The paths of the 1-D and 3-D layers ("shift" is the 2-D shift-and-add form).
IMPLS_ND = ("auto", "grouped", "folded", "recompute")
#: Spatial dimensions ``depthwise_stft_nd`` / ``stft_separable_nd`` read from their input.
SPATIAL_DIMS = (1, 3)
LAYOUTS = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, T, H, W)"}
#: Largest 1-D kernel for which the folded convolution is the fastest path, in training
#: and in inference (``dwstft bench layer --dims 1``, docs/family.md).
FOLDED_MAX_1D_TRAIN = 13
FOLDED_MAX_1D_INFERENCE = 25


def impls(dims: int) -> tuple[str, ...]:
    """The execution paths of a ``dims``-D layer."""
    return IMPLS if dims == 2 else IMPLS_ND


def check_impl(impl: object, dims: int = 2) -> str:
    """Validate an execution-path name (one of ``impls(dims)``); returns it."""
    if impl not in impls(dims):
        raise ValueError(f"impl must be one of {impls(dims)}, got {impl!r}")
    return impl


def _one_of(forms: list[str]) -> str:
    return forms[0] if len(forms) == 1 else ", ".join(forms[:-1]) + " or " + forms[-1]


def check_stride(stride: object, dims: int) -> tuple[int, ...]:
    """A positive int, or (1-D/3-D) a tuple of ``dims`` positive ints → one per dimension.
    The 2-D layers take an int, as they always have."""
    tuples = dims != 2
    strides = tuple(stride) if tuples and isinstance(stride, (tuple, list)) else (stride,) * dims
    if len(strides) != dims or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in strides
    ):
        forms = ["a positive int"] + [f"a tuple of {dims} positive ints"] * tuples
        raise ValueError(f"stride must be {_one_of(forms)}, got {stride!r}")
    return strides


def resolve_padding(padding: object, kernel_size: tuple[int, ...]) -> tuple[int, ...]:
    """Zeros added on each side, per dimension: ``"same"`` → n_i // 2 (size-preserving at
    stride 1, ceil(size / stride) otherwise), ``"valid"`` → 0, an int >= 0, or (1-D/3-D) a
    tuple of one int >= 0 per dimension."""
    dims = len(kernel_size)
    if padding == "same":
        return tuple(n // 2 for n in kernel_size)
    if padding == "valid":
        return (0,) * dims
    tuples = dims != 2
    pads = tuple(padding) if tuples and isinstance(padding, (tuple, list)) else (padding,) * dims
    if len(pads) != dims or any(
        isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in pads
    ):
        forms = ["'same'", "'valid'", "an int >= 0"] + [f"a tuple of {dims} ints >= 0"] * tuples
        raise ValueError(f"padding must be {_one_of(forms)}, got {padding!r}")
    return pads


def is_symbolic(x: object) -> bool:
    """Whether ``x`` is being recorded by ``torch.jit.trace`` or ``torch.fx.symbolic_trace``,
    so that its shape, dtype and ``requires_grad`` are not concrete values to branch on."""
    return torch.jit.is_tracing() or isinstance(x, torch.fx.Proxy)


def check_input(x: torch.Tensor, dims: int, in_channels: int | None = None) -> None:
    """Raise ValueError unless ``x`` is a real floating-point (N, C, *spatial) tensor with
    ``dims`` spatial dimensions and C == in_channels. Every execution path checks this the
    same way: integer, boolean and complex inputs are refused rather than silently cast or
    truncated. Skipped while ``torch.jit.trace`` or ``torch.fx.symbolic_trace`` records
    (shapes are then symbolic)."""
    if is_symbolic(x):
        return
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"input must be a torch.Tensor {LAYOUTS[dims]}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(
            f"input must be a real floating-point tensor (float16/bfloat16/float32/float64), "
            f"got dtype {x.dtype}; convert it first, e.g. x.float()"
        )
    if x.dim() != dims + 2:
        raise ValueError(
            f"input must be {dims + 2}-D {LAYOUTS[dims]}, got {x.dim()}-D with shape "
            f"{tuple(x.shape)}"
        )
    if in_channels is not None and x.shape[1] != in_channels:
        raise ValueError(
            f"input has {x.shape[1]} channels (shape {tuple(x.shape)}), "
            f"expected in_channels={in_channels}"
        )


def input_dims(x: object, kernel_size: object = None) -> int:
    """Spatial dimensions of a ``*_nd`` function's input (1 or 3); raises ValueError for
    anything else. While ``torch.fx`` records, ``x`` has no concrete shape: a per-dimension
    ``kernel_size`` tuple (what the layers pass) tells instead."""
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
            f"{tuple(x.shape)} (4-D images: dwstft.depthwise_stft, dwstft.stft_separable)"
        )
    return dims


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


def fold_weight(weight: torch.Tensor, basis: torch.Tensor, dims: int | None = None) -> torch.Tensor:
    """Fold a pointwise weight into one dense kernel.

    Args:
        weight: (F, M·C, 1, ...) or (F, M·C) pointwise weight.
        basis: (M, *k) from ``stft_basis`` (M = 8, 2-D) or ``stft_basis_nd``.
        dims: spatial dimensions of the kernel; default ``basis.dim() - 1`` (2 while
            ``torch.fx`` records, when the basis has no concrete shape).

    Returns:
        (F, C, *k) with ``K[f, c] = sum_m weight[f, c*M + m] * basis[m]``.
    """
    maps = basis.shape[0]
    if not is_symbolic(weight) and weight.shape[1] % maps:
        raise ValueError(
            f"weight has {weight.shape[1]} input channels, expected a multiple of {maps}"
        )
    if dims is None:
        dims = 2 if isinstance(basis, torch.fx.Proxy) else basis.dim() - 1
    return fold_weight_unchecked(weight, basis, dims)


def fold_weight_unchecked(weight: torch.Tensor, basis: torch.Tensor, dims: int) -> torch.Tensor:
    """``fold_weight`` without validation (TorchScript-compatible)."""
    maps = basis.shape[0]
    w = weight.reshape(weight.shape[0], weight.shape[1] // maps, maps)
    if dims == 2:
        # The 2-D contraction as it has always been written: einsum and tensordot reach
        # different matrix kernels (bmm, mm) that round differently for some shapes.
        return torch.einsum("fck,kij->fcij", w, basis.to(w.dtype))
    # One contraction over the maps; no Python loop over the shape, so torch.fx records it.
    return torch.tensordot(w, basis.to(w.dtype), dims=([2], [0]))


def choose_impl(
    kernel_size: tuple[int, ...],
    needs_grad: bool,
    compiling: bool = False,
    *,
    multiscale: bool = False,
) -> str:
    """The path ``impl="auto"`` takes: the one place it is decided. From ``dwstft bench
    layer`` (``--dims 1|2|3``) and ``dwstft bench compile`` on a 2-core x86 CPU (numbers in
    docs/architecture.md and docs/family.md).

    - ``MultiScaleSTFTSeparable`` (``multiscale``): ``"folded"``, one dense n_max × n_max
      conv for all its sizes: fastest for training and inference at every block shape of
      the paper's networks.
    - 2-D, n = 3: ``"folded"``. 9·C·F multiply-adds in one dense conv beat 8·C·F in a 1×1
      plus a separate bank pass, forward and backward, and only the input is saved.
    - 2-D, n >= 5, training, eager: ``"recompute"`` (saves only the input, as required to
      stay below a depthwise-separable layer's memory); traced by ``torch.compile``:
      ``"folded"`` (a custom autograd Function loses its saving under compile, and of the
      paths that keep it the folded conv compiled 2.5x faster than the fused shift-and-add
      bank and ran 1.6x faster); inference: ``"grouped"`` (8·C·(F + n²) beats n²·C·F).
    - 3-D: ``"folded"`` for every kernel (1×3×3 to 7×7×7): one dense ``conv3d`` beats the
      bank plus the pointwise product over 26·C maps, whose memory traffic dominates.
    - 1-D: ``"folded"`` up to n = 13 in training and n = 25 in inference; beyond,
      ``"recompute"`` (training) or ``"grouped"`` (inference), whose cost does not grow
      with n.

    Args:
        kernel_size: one size per spatial dimension ((n, n) in 2-D).
        needs_grad: whether the call records a backward.
        compiling: whether ``torch.compile`` is tracing the call.
        multiscale: the call is a ``MultiScaleSTFTSeparable``'s.
    """
    if multiscale or len(kernel_size) == 3:
        return "folded"
    if len(kernel_size) == 1:
        limit = FOLDED_MAX_1D_TRAIN if needs_grad else FOLDED_MAX_1D_INFERENCE
        if kernel_size[0] <= limit:
            return "folded"
        return "recompute" if needs_grad else "grouped"
    if kernel_size[0] == 3:
        return "folded"
    if not needs_grad:
        return "grouped"
    return "folded" if compiling else "recompute"


def resolve_impl(
    impl: str,
    kernel_size: tuple[int, ...],
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    training: bool = True,
    multiscale: bool = False,
) -> str:
    """``impl``, or for ``"auto"`` what ``choose_impl`` picks for this call: a layer in
    evaluation mode (``training=False``) and a ``torch.fx.symbolic_trace`` recording (one
    graph for every later call) take the fastest forward-only path, built from plain
    operators so that tracing and export see ordinary convolutions."""
    if impl != "auto":
        return impl
    if not training or isinstance(x, torch.fx.Proxy):
        return choose_impl(kernel_size, False, False, multiscale=multiscale)
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    return choose_impl(
        kernel_size, needs_grad, torch.compiler.is_compiling(), multiscale=multiscale
    )


def depthwise(
    x: torch.Tensor,
    kernel_size: object,
    stride: object,
    padding: object,
    *,
    basis: torch.Tensor | None,
    dims: int,
) -> torch.Tensor:
    """The Depthwise-STFT of a ``dims``-D input, arguments validated (see the front ends)."""
    sizes = check_kernel_size_nd(kernel_size, dims)
    check_input(x, dims)
    strides = check_stride(stride, dims)
    pads = resolve_padding(padding, sizes)
    return paths.bank_maps(x, _basis_for(x, sizes, basis), strides, pads)


def separable(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_size: object,
    stride: object,
    padding: object,
    *,
    impl: str,
    basis: torch.Tensor | None,
    dims: int,
    training: bool = True,
) -> torch.Tensor:
    """Depthwise-STFT separable convolution of a ``dims``-D input on the path ``impl``
    (``"auto"``: ``resolve_impl``), arguments validated: every front end and layer runs here.
    ``training=False`` is a layer in evaluation mode."""
    sizes = check_kernel_size_nd(kernel_size, dims)
    strides = check_stride(stride, dims)
    pads = resolve_padding(padding, sizes)
    check_impl(impl, dims)
    check_input(x, dims)
    _check_weight(weight, x.shape[1], maps_per_channel(sizes), dims)
    basis = _basis_for(x, sizes, basis)
    impl = resolve_impl(impl, sizes, x, weight, bias, training=training)
    conv = conv_nd(dims)
    if impl == "folded":
        return conv(x, fold_weight(weight, basis, dims), bias, strides, pads)
    if impl == "grouped":
        return conv(paths.bank_maps(x, basis, strides, pads), weight, bias)
    if impl == "shift":
        n, s, p = sizes[0], strides[0], pads[0]
        return checkpoint(paths.shift_separable, x, weight, bias, n, s, p, use_reentrant=False)
    return paths.RecomputeSTFTSeparable.apply(x, weight, bias, basis, strides, pads)


def depthwise_stft(
    x: torch.Tensor,
    kernel_size: int = 3,
    stride: int = 1,
    padding: str | int = "same",
    *,
    basis: torch.Tensor | None = None,
) -> torch.Tensor:
    """Depthwise-STFT of Eq. 2 for every channel of a 2-D input.

    Args:
        x: (N, C, H, W) real input.
        kernel_size: neighbourhood size n (odd, >= 3).
        stride, padding: as ``conv2d``; ``"same"`` pads n // 2 zeros on each side.
        basis: optional precomputed ``stft_basis(n)`` (the layers pass their buffer).

    Returns:
        (N, 8C, H_out, W_out): channel ``c*8 + 2k`` is Re F(v_{k+1}), ``c*8 + 2k + 1`` is
        Im F(v_{k+1}).
    """
    return depthwise(x, kernel_size, stride, padding, basis=basis, dims=2)


def depthwise_stft_nd(
    x: torch.Tensor,
    kernel_size: int | tuple[int, ...] = 3,
    stride: int | tuple[int, ...] = 1,
    padding: str | int | tuple[int, ...] = "same",
    *,
    basis: torch.Tensor | None = None,
) -> torch.Tensor:
    """The local Fourier transform of every channel of a 1-D or 3-D input at the lowest
    frequency points.

    Args:
        x: (N, C, L) or (N, C, T, H, W), floating point.
        kernel_size: n (odd) or one odd size per dimension (see ``dwstft.nn.basis``).
        stride, padding: as ``conv1d`` / ``conv3d``; ``"same"`` pads n_i // 2 zeros.
        basis: optional precomputed ``stft_basis_nd(kernel_size)`` (the layers pass theirs).

    Returns:
        (N, M·C, *out): channel ``c*M + 2p`` is Re F(v_{p+1}), ``c*M + 2p + 1`` is Im, with
        M = 2 (1-D), 26 (n×n×n), 8 (1×n×n) or 2 (n×1×1) maps per channel.
    """
    dims = input_dims(x, kernel_size)
    return depthwise(x, kernel_size, stride, padding, basis=basis, dims=dims)


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
    return separable(x, weight, bias, kernel_size, stride, padding, impl=impl, basis=basis, dims=2)


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
    """Depthwise-STFT separable convolution of a 1-D or 3-D input:
    ``conv(depthwise_stft_nd(x), weight, bias)``.

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
    return separable(
        x, weight, bias, kernel_size, stride, padding, impl=impl, basis=basis, dims=dims
    )
