"""``nn.Module`` front ends of the 1-D and 3-D family: ``DepthwiseSTFT1d`` /
``DepthwiseSTFT3d`` (the fixed bank) and ``DepthwiseSTFTSeparable1d`` /
``DepthwiseSTFTSeparable3d`` (the bank, then a trainable pointwise convolution).

Constructors take ``nn.Conv1d`` / ``nn.Conv3d``'s argument names, positional up to
``padding`` and keyword-only after it; ``dilation``, ``groups`` and ``padding_mode`` accept
only their defaults. The fixed kernels are a non-persistent buffer, rebuilt from scratch
after every ``Module._apply`` (``.to()``, ``.double()``, ``to_empty()`` after meta-device
construction), so ``parameters()`` holds exactly what trains. The kernel size is recorded in
the state dict (``get_extra_state``), so weights trained with another kernel size are
refused with a clear error. There is no implicit cache: for fast inference, ``fold()``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dwstft.bank import FixedBank
from dwstft.basis_nd import check_kernel_size_nd, maps_per_channel, stft_basis_nd
from dwstft.functional_nd import (
    check_impl_nd,
    check_input_nd,
    check_positive,
    check_stride_nd,
    choose_impl_nd,
    depthwise_stft_nd,
    fold_weight_nd,
    fold_weight_nd_unchecked,
    resolve_padding_nd,
    stft_separable_nd,
)


def _check_conv_defaults(dims: int, dilation: object, groups: object, padding_mode: object) -> None:
    """The ``nn.ConvNd`` arguments these layers accept only at their defaults."""
    dilations = tuple(dilation) if isinstance(dilation, (tuple, list)) else (dilation,) * dims
    if dilations != (1,) * dims:
        raise ValueError(
            f"dilation must be 1 (the STFT neighbourhood is contiguous), got {dilation!r}"
        )
    if groups != 1:
        raise ValueError(
            f"groups must be 1 (the bank is already per channel; the pointwise weight mixes "
            f"all of them), got {groups!r}"
        )
    if padding_mode != "zeros":
        raise ValueError(f"padding_mode must be 'zeros', got {padding_mode!r}")


def _check_dtype(dtype: torch.dtype | None) -> torch.dtype:
    dtype = dtype or torch.get_default_dtype()
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    return dtype


class _DepthwiseSTFTNd(FixedBank):
    """The per-channel local Fourier transform at the lowest frequency points (shared
    implementation of ``DepthwiseSTFT1d`` / ``DepthwiseSTFT3d``). Nothing trains."""

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
        super().__init__()
        _check_conv_defaults(self.dims, dilation, 1, padding_mode)
        self.in_channels = check_positive("in_channels", in_channels)
        self.kernel_size = check_kernel_size_nd(kernel_size, self.dims)
        self.stride = check_stride_nd(stride, self.dims)
        self.padding = (
            padding if isinstance(padding, str) else resolve_padding_nd(padding, self.kernel_size)
        )
        self.padding_px = resolve_padding_nd(padding, self.kernel_size)
        self.dilation = (1,) * self.dims
        self.padding_mode = padding_mode
        self.maps_per_channel = maps_per_channel(self.kernel_size)
        self.out_channels = self.maps_per_channel * in_channels
        if device is None:
            device = torch.get_default_device()
        basis = self.exact_basis(_check_dtype(dtype), torch.device(device))
        self.register_buffer("basis", basis, persistent=False)

    def exact_basis(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The kernels (M, *kernel_size) from their definition."""
        return stft_basis_nd(self.kernel_size, dtype=dtype, device=device)

    @torch.jit.unused
    def _forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        check_input_nd(x, self.dims, self.in_channels)
        return depthwise_stft_nd(
            x, self.kernel_size, self.stride, self.padding_px, basis=self.basis
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding!r}"
        )


class DepthwiseSTFT1d(_DepthwiseSTFTNd):
    """1-D local Fourier transform of every channel at frequency a = 1/n: Re and Im.

    Shapes: (N, C, L) → (N, 2C, L_out); channel ``2c`` is Re F(a), ``2c + 1`` is Im F(a).
    """

    dims = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, L) → (N, 2C, L_out)."""
        if torch.jit.is_scripting():
            bank = self.basis.repeat(self.in_channels, 1).unsqueeze(1)
            return F.conv1d(x, bank, None, self.stride, self.padding_px, 1, self.in_channels)
        return self._forward_eager(x)


class DepthwiseSTFT3d(_DepthwiseSTFTNd):
    """3-D local Fourier transform of every channel: 13 points (26 maps per channel) for an
    n×n×n kernel, 4 points (8 maps) for a spatial-only 1×n×n kernel, 1 point (2 maps) for a
    temporal-only n×1×1 kernel (``dwstft.basis_nd``).

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
    (shared implementation of ``DepthwiseSTFTSeparable1d`` / ``DepthwiseSTFTSeparable3d``)."""

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
        super().__init__()
        _check_conv_defaults(self.dims, dilation, groups, padding_mode)
        check_positive("out_channels", out_channels)
        self.impl = check_impl_nd(impl)
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
    def kernel_size(self) -> tuple[int, ...]:
        return self.stft.kernel_size

    @property
    def stride(self) -> tuple[int, ...]:
        return self.stft.stride

    @property
    def padding(self) -> str | tuple[int, ...]:
        return self.stft.padding

    @property
    def dilation(self) -> tuple[int, ...]:
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
        check_input_nd(x, self.dims, self.in_channels)
        impl = self.impl
        if impl == "auto" and not self.training:
            # Evaluation mode: the fastest forward-only path, built from plain operators
            # (so tracing and export see ordinary convolutions).
            impl = choose_impl_nd(self.kernel_size, needs_grad=False)
        return stft_separable_nd(
            x,
            self.pointwise.weight,
            self.pointwise.bias,
            self.kernel_size,
            self.stride,
            self.stft.padding_px,
            impl=impl,
            basis=self.stft.basis,
        )

    @torch.no_grad()
    def fold(self) -> nn.Module:
        """An ``nn.Conv1d`` / ``nn.Conv3d`` (C → F, kernel_size) computing the same function."""
        weight = self.pointwise.weight
        conv = self._conv_class(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.stft.padding_px,
            bias=self.pointwise.bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        conv.weight.copy_(fold_weight_nd(weight, self.stft.basis.to(weight.dtype)))
        if conv.bias is not None:
            conv.bias.copy_(self.pointwise.bias)
        return conv

    def extra_repr(self) -> str:
        return f"impl={self.impl!r}"


class DepthwiseSTFTSeparable1d(_STFTSeparableNd):
    """1-D Depthwise-STFT (2 maps per channel) then a trainable 1-tap convolution 2C → F.

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
            kernel = fold_weight_nd_unchecked(self.pointwise.weight, self.stft.basis)
            return F.conv1d(x, kernel, self.pointwise.bias, self.stft.stride, self.stft.padding_px)
        return self._forward_eager(x)


class DepthwiseSTFTSeparable3d(_STFTSeparableNd):
    """3-D Depthwise-STFT (26, 8 or 2 maps per channel for n×n×n, 1×n×n or n×1×1 kernels)
    then a trainable 1×1×1 convolution M·C → F.

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
            kernel = fold_weight_nd_unchecked(self.pointwise.weight, self.stft.basis)
            return F.conv3d(x, kernel, self.pointwise.bias, self.stft.stride, self.stft.padding_px)
        return self._forward_eager(x)


def set_impl_nd(module: nn.Module, impl: str) -> nn.Module:
    """Set the execution path of every 1-D/3-D Depthwise-STFT separable layer inside
    ``module``. Returns ``module``."""
    check_impl_nd(impl)
    for m in module.modules():
        if isinstance(m, _STFTSeparableNd):
            m.impl = impl
    return module
