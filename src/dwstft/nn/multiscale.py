"""The 2-D layers built on several Depthwise-STFT banks: ``MultiScaleSTFTSeparable`` (the
inception-style core of the paper's Block 1, with ``.fold()``) and ``ReLPU`` (Kumawat &
Raman, ICASSP 2019). Constructors follow ``dwstft.nn.layers``: arguments after
``kernel_sizes`` are keyword-only, the fixed kernels are non-persistent buffers of one
``DepthwiseSTFT`` per size, each recording its kernel size in the state dict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dwstft.nn.basis import MAPS_PER_CHANNEL, check_positive
from dwstft.nn.functional import check_impl, check_input, resolve_impl, separable
from dwstft.nn.layers import DepthwiseSTFT


def _stft_banks(
    in_channels: int,
    kernel_sizes: tuple[int, ...],
    device: torch.device | str | None,
    dtype: torch.dtype | None,
) -> nn.ModuleList:
    """One ``DepthwiseSTFT`` per neighbourhood size, all on the same input channels."""
    if not kernel_sizes:
        raise ValueError("kernel_sizes must name at least one odd size >= 3, got ()")
    return nn.ModuleList(
        DepthwiseSTFT(in_channels, n, device=device, dtype=dtype) for n in kernel_sizes
    )


class MultiScaleSTFTSeparable(nn.Module):
    """Depthwise-STFT at several neighbourhood sizes, concatenated, then one trainable 1×1
    (the paper's Block 1 core: n = 3 and n = 5 on the same channels, "inception style").

    Equal to the sum of one ``DepthwiseSTFTSeparable`` per size, each using its own slice
    of ``pointwise.weight``. ``impl="auto"`` (``choose_impl``) or ``"folded"`` runs it as one
    dense n_max × n_max convolution whose kernel is built from ``pointwise.weight`` (so it trains
    the same parameters); any other ``impl`` runs the per-size sum on that path.
    Stride 1, size-preserving padding. Trainable parameters: 8·C·len(kernel_sizes)·F (+F).
    Arguments after ``kernel_sizes`` are keyword-only.

    Shapes: (N, C, H, W) float → (N, F, H, W).
    """

    dims = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: tuple[int, ...] = (3, 5),
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        impl: str = "auto",
    ) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__()
        check_positive("out_channels", out_channels)
        check_impl(impl)
        self.stfts = _stft_banks(in_channels, kernel_sizes, device, dtype)
        width = MAPS_PER_CHANNEL * in_channels
        self.pointwise = nn.Conv2d(
            width * len(kernel_sizes), out_channels, 1, bias=bias, device=device, dtype=dtype
        )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_sizes = tuple(s.kernel_size for s in self.stfts)
        self.maps_width = width
        self.max_kernel_size = max(self.kernel_sizes)
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, F, H, W)."""
        if torch.jit.is_scripting():
            pad = self.max_kernel_size // 2
            return F.conv2d(x, self._folded_kernel(), self.pointwise.bias, 1, pad)
        return self._forward_eager(x)

    @torch.jit.unused
    def _forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, 2, self.in_channels)
        n_max, weight, bias = self.max_kernel_size, self.pointwise.weight, self.pointwise.bias
        impl = resolve_impl(
            self.impl, (n_max, n_max), x, weight, bias, training=self.training, multiscale=True
        )
        if impl == "folded":
            return F.conv2d(x, self._folded_kernel(), bias, 1, n_max // 2)
        width, out = self.maps_width, None
        for i, stft in enumerate(self.stfts):
            part = separable(
                x,
                weight[:, i * width : (i + 1) * width],
                bias if i == 0 else None,
                stft.kernel_size,
                1,
                "same",
                impl=impl,
                basis=stft.basis,
                dims=2,
            )
            out = part if out is None else out + part
        return out

    def _folded_kernel(self) -> torch.Tensor:
        """(F, C, n_max, n_max): every size's folded kernel, centred and summed."""
        n_max = self.max_kernel_size
        bases = []
        for stft in self.stfts:
            p = (n_max - stft.kernel_size) // 2
            bases.append(F.pad(stft.basis, [p, p, p, p]))
        # (S, 8, n, n) against the weight viewed as (F, S, C, 8): one contraction.
        weight = self.pointwise.weight.reshape(self.out_channels, len(bases), self.in_channels, -1)
        return torch.einsum("fsck,skij->fcij", weight, torch.stack(bases).to(weight.dtype))

    @torch.no_grad()
    def fold(self) -> nn.Conv2d:
        """One ``nn.Conv2d(C, F, n_max)`` computing the same function."""
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.max_kernel_size,
            padding=self.max_kernel_size // 2,
            bias=self.pointwise.bias is not None,
            device=self.pointwise.weight.device,
            dtype=self.pointwise.weight.dtype,
        )
        conv.weight.copy_(self._folded_kernel())
        if conv.bias is not None:
            conv.bias.copy_(self.pointwise.bias)
        return conv

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_sizes={self.kernel_sizes}, "
            f"impl={self.impl!r}"
        )


class ReLPU(nn.Module):
    """ReLPU (Kumawat & Raman, ICASSP 2019, the paper's ref. [14]): Depthwise-STFT, ReLU on
    the real/imaginary coefficients, then a trainable 1×1. With several kernel sizes the
    coefficients of every size are concatenated before the ReLU. The ReLU sits between
    the fixed bank and the pointwise weight, so unlike the Depthwise-STFT separable layer
    it cannot be folded into one convolution.

    Shapes: (N, C, H, W) float → (N, F, H, W). Trainable parameters: 8·C·len(kernel_sizes)·F
    (+F). Arguments after ``kernel_sizes`` are keyword-only.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: tuple[int, ...] = (3,),
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__()
        check_positive("out_channels", out_channels)
        self.stfts = _stft_banks(in_channels, kernel_sizes, device, dtype)
        self.pointwise = nn.Conv2d(
            MAPS_PER_CHANNEL * in_channels * len(kernel_sizes),
            out_channels,
            1,
            bias=bias,
            device=device,
            dtype=dtype,
        )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_sizes = tuple(s.kernel_size for s in self.stfts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, F, H, W)."""
        maps = torch.cat([stft(x) for stft in self.stfts], dim=1)
        return self.pointwise(F.relu(maps))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_sizes={self.kernel_sizes}"
