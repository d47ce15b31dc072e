"""``nn.Module`` front ends of the family, written once for 1, 2 and 3 dimensions (as
torch's ``_ConvNd``): the fixed bank ``DepthwiseSTFT1d`` / ``DepthwiseSTFT`` /
``DepthwiseSTFT3d`` and the separable layer ``DepthwiseSTFTSeparable1d`` /
``DepthwiseSTFTSeparable`` / ``DepthwiseSTFTSeparable3d`` (the bank, then a trainable
pointwise convolution, with ``.fold()``).

Constructors take ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Conv3d``'s argument names; the
arguments up to ``padding`` may be positional (in their order), every later one is
keyword-only, so that a call written for ``nn.ConvNd``'s full positional order fails loudly
instead of binding a value to the wrong argument. ``dilation``, ``groups`` and
``padding_mode`` accept only their defaults. The 2-D layers keep the int attributes of
their square kernel (``kernel_size``, ``stride``, ``padding``); the 1-D and 3-D layers hold
one value per dimension, as ``nn.Conv1d`` / ``nn.Conv3d`` do.

The fixed STFT kernels are non-persistent buffers, so ``parameters()`` holds exactly what
trains. They are rebuilt from their definition after every ``Module._apply`` (``.to``,
``.double()``, ``.to_empty`` after construction on the meta device, ...), so no path can
leave them holding another tensor's bytes. State dicts carry the pointwise weights and,
per bank, its kernel size (``_extra_state``): loading weights trained with another kernel
size fails instead of silently computing another function (``dwstft.nn.bank``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dwstft.nn.bank import FixedBank
from dwstft.nn.basis import check_kernel_size_nd, check_positive, maps_per_channel, stft_basis_nd
from dwstft.nn.functional import (
    check_impl,
    check_input,
    check_stride,
    depthwise,
    fold_weight,
    fold_weight_unchecked,
    resolve_padding,
    separable,
)

#: Why each ``nn.ConvNd`` option is accepted only at its default.
_CONV_DEFAULTS = {
    "dilation": (1, "the STFT neighbourhood is contiguous"),
    "groups": (1, "the bank is already per channel; the pointwise weight mixes all of them"),
    "padding_mode": ("zeros", "the border is zero-padded as in Eq. 2"),
}


def check_conv_defaults(dims: int, dilation: object, groups: object, padding_mode: object) -> None:
    """Refuse ``nn.ConvNd`` options the Depthwise-STFT layers do not implement (only their
    defaults are accepted; ``dilation`` also as a tuple of ones)."""
    if isinstance(dilation, (tuple, list)) and tuple(dilation) == (1,) * dims:
        dilation = 1
    for name, value in (("dilation", dilation), ("groups", groups), ("padding_mode", padding_mode)):
        default, reason = _CONV_DEFAULTS[name]
        if value != default:
            raise ValueError(
                f"{name}={value!r} is not supported by Depthwise-STFT layers ({reason}); "
                f"{name} must be {default!r}, nn.Conv{dims}d's default"
            )


def _check_dtype(dtype: torch.dtype | None) -> torch.dtype:
    dtype = dtype or torch.get_default_dtype()
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    return dtype


def per_dimension(value: int | tuple[int, ...], dims: int) -> tuple[int, ...]:
    """An attribute in its per-dimension form (2-D layers hold one int for both)."""
    return tuple(value) if isinstance(value, tuple) else (value,) * dims


class _DepthwiseSTFTNd(FixedBank):
    """The per-channel local Fourier transform at the lowest frequency points (shared
    implementation of ``DepthwiseSTFT1d`` / ``DepthwiseSTFT`` / ``DepthwiseSTFT3d``).
    Nothing trains."""

    dims: int = 0

    def __init__(
        self,
        in_channels: int,
        kernel_size: int | tuple[int, ...] = 3,
        stride: int | tuple[int, ...] = 1,
        padding: str | int | tuple[int, ...] = "same",
        *,
        dilation: int | tuple[int, ...] = 1,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__()
        check_conv_defaults(self.dims, dilation, 1, padding_mode)
        self.in_channels = check_positive("in_channels", in_channels)
        sizes = check_kernel_size_nd(kernel_size, self.dims)
        self.kernel_size = self._form(sizes)
        self.stride = self._form(check_stride(stride, self.dims))
        pads = resolve_padding(padding, sizes)
        self.padding = padding if isinstance(padding, str) else self._form(pads)
        self.padding_px = self._form(pads)
        self.dilation = self._form((1,) * self.dims)
        self.padding_mode = padding_mode
        self.maps_per_channel = maps_per_channel(sizes)
        self.out_channels = self.maps_per_channel * in_channels
        if device is None:
            device = torch.get_default_device()
        basis = self.exact_basis(_check_dtype(dtype), torch.device(device))
        self.register_buffer("basis", basis, persistent=False)

    def _form(self, values: tuple[int, ...]) -> int | tuple[int, ...]:
        """Per-dimension values as this layer shows them: one int in 2-D (square)."""
        return values[0] if self.dims == 2 else values

    def exact_basis(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The kernels (M, *kernel_size) from their definition."""
        sizes = per_dimension(self.kernel_size, self.dims)
        return stft_basis_nd(sizes, dtype=dtype, device=device)

    @torch.jit.unused
    def _forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.dims, self.in_channels)
        return depthwise(
            x, self.kernel_size, self.stride, self.padding_px, basis=self.basis, dims=self.dims
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding!r}"
        )


class DepthwiseSTFT1d(_DepthwiseSTFTNd):
    """1-D local Fourier transform of every channel at frequency a = 1/n: Re and Im.

    Args:
        in_channels: C.
        kernel_size: n, odd and >= 3 (or a 1-tuple).
        stride, padding: as ``nn.Conv1d``; ``"same"`` pads n // 2 zeros on each side.
        dilation, padding_mode (keyword-only): only their defaults (1, "zeros").
        device, dtype (keyword-only): of the basis buffer.

    Shapes: (N, C, L) → (N, 2C, L_out); channel ``2c`` is Re F(a), ``2c + 1`` is Im F(a).
    """

    dims = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, L) → (N, 2C, L_out)."""
        if torch.jit.is_scripting():
            bank = self.basis.repeat(self.in_channels, 1).unsqueeze(1)
            return F.conv1d(x, bank, None, self.stride, self.padding_px, 1, self.in_channels)
        return self._forward_eager(x)


class DepthwiseSTFT(_DepthwiseSTFTNd):
    """Per-channel 2-D STFT over each pixel's n×n neighbourhood at the four lowest
    frequencies (paper Eq. 2), real and imaginary parts. Nothing trains.

    Args:
        in_channels: C.
        kernel_size: n, odd and >= 3 (or a square pair (n, n)).
        stride, padding: as ``nn.Conv2d``; ``"same"`` pads n // 2 zeros on each side.
        dilation, padding_mode (keyword-only): only their defaults (1, "zeros").
        device, dtype (keyword-only): of the basis buffer; default: the current default
            device (an active ``with torch.device(...)`` included) and dtype.

    Shapes: (N, C, H, W) float → (N, 8C, H_out, W_out); channel ``c*8 + 2k`` is
    Re F(v_{k+1}), ``c*8 + 2k + 1`` is Im F(v_{k+1}).
    """

    dims = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, 8C, H_out, W_out)."""
        if torch.jit.is_scripting():
            bank = self.basis.repeat(self.in_channels, 1, 1).unsqueeze(1)
            return F.conv2d(x, bank, None, self.stride, self.padding_px, 1, self.in_channels)
        return self._forward_eager(x)


class DepthwiseSTFT3d(_DepthwiseSTFTNd):
    """3-D local Fourier transform of every channel: 13 points (26 maps per channel) for an
    n×n×n kernel, 4 points (8 maps) for a spatial-only 1×n×n kernel, 1 point (2 maps) for a
    temporal-only n×1×1 kernel (``dwstft.nn.basis``).

    Args:
        in_channels: C.
        kernel_size: n (odd, >= 3) or (T, H, W) odd sizes, at least one >= 3.
        stride, padding: as ``nn.Conv3d``; ``"same"`` pads n_i // 2 zeros on each side.
        dilation, padding_mode (keyword-only): only their defaults (1, "zeros").
        device, dtype (keyword-only): of the basis buffer.

    Shapes: (N, C, T, H, W) → (N, M·C, T_out, H_out, W_out); channel ``c*M + 2p`` is
    Re F(v_{p+1}), ``c*M + 2p + 1`` is Im F(v_{p+1}).
    """

    dims = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) → (N, M·C, T_out, H_out, W_out)."""
        if torch.jit.is_scripting():
            bank = self.basis.repeat(self.in_channels, 1, 1, 1).unsqueeze(1)
            return F.conv3d(x, bank, None, self.stride, self.padding_px, 1, self.in_channels)
        return self._forward_eager(x)


class _STFTSeparableNd(nn.Module):
    """Depthwise-STFT then a trainable pointwise convolution ``self.pointwise`` (M·C → F)
    (shared implementation of ``DepthwiseSTFTSeparable1d`` / ``DepthwiseSTFTSeparable`` /
    ``DepthwiseSTFTSeparable3d``)."""

    # TorchScript compiles properties unless told otherwise; none is part of forward.
    __jit_unused_properties__ = [  # noqa: RUF012
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "groups",
        "padding_mode",
        "maps_per_channel",
    ]
    dims: int = 0
    _stft_class: type[_DepthwiseSTFTNd] = _DepthwiseSTFTNd
    _conv_class: type[nn.Module] = nn.Module

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...] = 3,
        stride: int | tuple[int, ...] = 1,
        padding: str | int | tuple[int, ...] = "same",
        *,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        impl: str = "auto",
    ) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__()
        check_positive("out_channels", out_channels)
        check_conv_defaults(self.dims, dilation, groups, padding_mode)
        self.impl = check_impl(impl, self.dims)
        self.stft = self._stft_class(
            in_channels, kernel_size, stride, padding, device=device, dtype=dtype
        )
        self.pointwise = self._conv_class(
            self.stft.out_channels, out_channels, 1, bias=bias, device=device, dtype=dtype
        )

    @property
    def in_channels(self) -> int:
        return self.stft.in_channels

    @property
    def out_channels(self) -> int:
        return self.pointwise.out_channels

    @property
    def kernel_size(self) -> int | tuple[int, ...]:
        return self.stft.kernel_size

    @property
    def stride(self) -> int | tuple[int, ...]:
        return self.stft.stride

    @property
    def padding(self) -> str | int | tuple[int, ...]:
        return self.stft.padding

    @property
    def dilation(self) -> int | tuple[int, ...]:
        return self.stft.dilation

    @property
    def groups(self) -> int:
        return 1

    @property
    def padding_mode(self) -> str:
        return self.stft.padding_mode

    @property
    def maps_per_channel(self) -> int:
        return self.stft.maps_per_channel

    @torch.jit.unused
    def _forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.dims, self.in_channels)
        return separable(
            x,
            self.pointwise.weight,
            self.pointwise.bias,
            self.kernel_size,
            self.stft.stride,
            self.stft.padding_px,
            impl=self.impl,
            basis=self.stft.basis,
            dims=self.dims,
            training=self.training,
        )

    @torch.no_grad()
    def fold(self) -> nn.Module:
        """An ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Conv3d`` (C → F, kernel_size) computing
        the same function (for inference and export)."""
        weight = self.pointwise.weight
        conv = self._conv_class(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stft.stride,
            self.stft.padding_px,
            bias=self.pointwise.bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        conv.weight.copy_(fold_weight(weight, self.stft.basis, self.dims))
        if conv.bias is not None:
            conv.bias.copy_(self.pointwise.bias)
        return conv

    def extra_repr(self) -> str:
        return f"impl={self.impl!r}"


class DepthwiseSTFTSeparable1d(_STFTSeparableNd):
    """1-D Depthwise-STFT (2 maps per channel) then a trainable 1-tap convolution 2C → F.

    Args: those of ``DepthwiseSTFTSeparable``, for (N, C, L) signals (``nn.Conv1d``'s);
    ``impl`` one of ``dwstft.nn.functional.IMPLS_ND``.

    Trainable parameters: 2·C·F (+ F with bias), whatever the kernel size. ``fold()``
    returns the equivalent ``nn.Conv1d(C, F, n)``.

    Shapes: (N, C, L) → (N, F, L_out).
    """

    dims = 1
    _stft_class = DepthwiseSTFT1d
    _conv_class = nn.Conv1d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, L) → (N, F, L_out)."""
        if torch.jit.is_scripting():
            kernel = fold_weight_unchecked(self.pointwise.weight, self.stft.basis, 1)
            return F.conv1d(x, kernel, self.pointwise.bias, self.stft.stride, self.stft.padding_px)
        return self._forward_eager(x)


class DepthwiseSTFTSeparable(_STFTSeparableNd):
    """Depthwise-STFT then a trainable 1×1 convolution ``self.pointwise`` (8C → F): a
    drop-in for ``nn.Conv2d(C, F, n, stride, padding)``.

    Args:
        in_channels: C.
        out_channels: F.
        kernel_size: n, the STFT neighbourhood (odd, >= 3).
        stride, padding: as ``nn.Conv2d`` (``"same"``: n // 2 zeros on each side).
        dilation, groups, padding_mode (keyword-only): accepted for ``nn.Conv2d``
            compatibility; only their defaults (1, 1, "zeros") are supported.
        bias (keyword-only): learn an additive bias (F,).
        device, dtype (keyword-only): of the weights and the basis.
        impl (keyword-only): execution path, one of ``dwstft.nn.functional.IMPLS``;
            ``"auto"`` picks per call (``dwstft.nn.functional.choose_impl``).

    Trainable parameters: 8·C·F (+ F with bias), independent of the kernel size (Table 1).
    ``fold()`` returns the equivalent ``nn.Conv2d(C, F, n)``: for inference, fold the
    whole model with ``dwstft.fold_model`` (one convolution per layer).

    Shapes: (N, C, H, W) float → (N, F, H_out, W_out).
    """

    dims = 2
    _stft_class = DepthwiseSTFT
    _conv_class = nn.Conv2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, F, H_out, W_out)."""
        if torch.jit.is_scripting():
            kernel = fold_weight_unchecked(self.pointwise.weight, self.stft.basis, 2)
            return F.conv2d(x, kernel, self.pointwise.bias, self.stft.stride, self.stft.padding_px)
        return self._forward_eager(x)


class DepthwiseSTFTSeparable3d(_STFTSeparableNd):
    """3-D Depthwise-STFT (26, 8 or 2 maps per channel for n×n×n, 1×n×n or n×1×1 kernels)
    then a trainable 1×1×1 convolution M·C → F.

    Args: those of ``DepthwiseSTFTSeparable``, for (N, C, T, H, W) clips (``nn.Conv3d``'s;
    ``kernel_size`` n or (T, H, W)); ``impl`` one of ``dwstft.nn.functional.IMPLS_ND``.

    Trainable parameters: M·C·F (+ F with bias), whatever the kernel size. ``fold()``
    returns the equivalent ``nn.Conv3d(C, F, kernel_size)``.

    Shapes: (N, C, T, H, W) → (N, F, T_out, H_out, W_out).
    """

    dims = 3
    _stft_class = DepthwiseSTFT3d
    _conv_class = nn.Conv3d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) → (N, F, T_out, H_out, W_out)."""
        if torch.jit.is_scripting():
            kernel = fold_weight_unchecked(self.pointwise.weight, self.stft.basis, 3)
            return F.conv3d(x, kernel, self.pointwise.bias, self.stft.stride, self.stft.padding_px)
        return self._forward_eager(x)
