"""``nn.Module`` front ends: DepthwiseSTFT, DepthwiseSTFTSeparable, its inception-style
multi-scale form (the core of the paper's Block 1) and ReLPU; ``set_impl`` and
``fold_model`` act on every such layer inside a model.

Constructors take ``nn.Conv2d``'s argument names; the arguments up to ``padding`` may be
positional (in ``nn.Conv2d``'s order), every later one is keyword-only, so that a call
written for ``nn.Conv2d``'s full positional order fails loudly instead of binding a value
to the wrong argument.

The fixed STFT kernels are non-persistent buffers, so ``parameters()`` holds exactly what
trains. They are rebuilt from their definition after every ``Module._apply`` (``.to``,
``.double()``, ``.to_empty`` after construction on the meta device, ...), so no path can
leave them holding another tensor's bytes. State dicts carry the pointwise weights and,
per Depthwise-STFT bank, its kernel size (``_extra_state``): loading weights trained with
another kernel size fails instead of silently computing another function.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from dwstft.bank import FixedBank
from dwstft.basis import MAPS_PER_CHANNEL, check_kernel_size, stft_basis
from dwstft.functional import (
    check_impl,
    check_input,
    check_positive,
    choose_impl,
    depthwise_stft,
    fold_weight,
    fold_weight_unchecked,
    resolve_padding,
    stft_separable,
)


def check_conv_defaults(dilation: object, groups: object, padding_mode: object) -> None:
    """Refuse ``nn.Conv2d`` options the Depthwise-STFT layers do not implement (only their
    ``nn.Conv2d`` defaults are accepted): the STFT neighbourhood is dense, every input
    channel has its own bank, and the border is zero-padded as in Eq. 2."""
    for name, value, default in (
        ("dilation", dilation, 1),
        ("groups", groups, 1),
        ("padding_mode", padding_mode, "zeros"),
    ):
        if value != default and value != (default, default):
            raise ValueError(
                f"{name}={value!r} is not supported by Depthwise-STFT layers; only "
                f"nn.Conv2d's default {name}={default!r} is"
            )


class DepthwiseSTFT(FixedBank):
    """Per-channel 2-D STFT over each pixel's n×n neighbourhood at the four lowest
    frequencies (paper Eq. 2), real and imaginary parts. Nothing trains.

    Args:
        in_channels: C.
        kernel_size: n, odd and >= 3 (or a square pair (n, n)).
        stride, padding: as ``nn.Conv2d``; ``"same"`` pads n // 2 zeros on each side.
        device, dtype (keyword-only): of the basis buffer; default: the current default
            device (an active ``with torch.device(...)`` included) and dtype.

    Shapes: (N, C, H, W) float → (N, 8C, H_out, W_out); channel ``c*8 + 2k`` is
    Re F(v_{k+1}), ``c*8 + 2k + 1`` is Im F(v_{k+1}).
    """

    def __init__(
        self,
        in_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: str | int = "same",
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__()
        self.in_channels = check_positive("in_channels", in_channels)
        self.kernel_size = check_kernel_size(kernel_size)
        self.stride = check_positive("stride", stride)
        self.padding = padding
        self.padding_px = resolve_padding(padding, self.kernel_size)
        self.out_channels = MAPS_PER_CHANNEL * in_channels
        basis = stft_basis(
            self.kernel_size, dtype=dtype or torch.get_default_dtype(), device=device
        )
        self.register_buffer("basis", basis, persistent=False)

    def exact_basis(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The 8 kernels (8, n, n) from their definition."""
        return stft_basis(self.kernel_size, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, 8C, H_out, W_out)."""
        if torch.jit.is_scripting():
            bank = self.basis.repeat(self.in_channels, 1, 1).unsqueeze(1)
            return F.conv2d(x, bank, None, self.stride, self.padding_px, 1, self.in_channels)
        return self._forward_eager(x)

    @torch.jit.unused
    def _forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels)
        return depthwise_stft(x, self.kernel_size, self.stride, self.padding, basis=self.basis)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding!r}"
        )


class DepthwiseSTFTSeparable(nn.Module):
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
        impl (keyword-only): execution path, one of ``dwstft.functional.IMPLS``;
            ``"auto"`` picks per call (docs/architecture.md).

    Trainable parameters: 8·C·F (+ F with bias), independent of the kernel size (Table 1).
    ``fold()`` returns the equivalent ``nn.Conv2d(C, F, n)``: for inference, fold the
    whole model with ``dwstft.fold_model`` (one convolution per layer).

    Shapes: (N, C, H, W) float → (N, F, H_out, W_out).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: str | int = "same",
        *,
        dilation: int = 1,
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
        check_conv_defaults(dilation, groups, padding_mode)
        check_impl(impl)
        self.stft = DepthwiseSTFT(
            in_channels, kernel_size, stride, padding, device=device, dtype=dtype
        )
        self.pointwise = nn.Conv2d(
            MAPS_PER_CHANNEL * in_channels, out_channels, 1, bias=bias, device=device, dtype=dtype
        )
        self.impl = impl

    @property
    def in_channels(self) -> int:
        return self.stft.in_channels

    @property
    def out_channels(self) -> int:
        return self.pointwise.out_channels

    @property
    def kernel_size(self) -> int:
        return self.stft.kernel_size

    @property
    def stride(self) -> int:
        return self.stft.stride

    @property
    def padding(self) -> str | int:
        return self.stft.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, F, H_out, W_out)."""
        if torch.jit.is_scripting():
            kernel = fold_weight_unchecked(self.pointwise.weight, self.stft.basis)
            return F.conv2d(x, kernel, self.pointwise.bias, self.stride, self.stft.padding_px)
        return self._forward_eager(x)

    @torch.jit.unused
    def _forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels)
        impl = self.impl
        if impl == "auto" and not self.training:
            # Evaluation mode: the fastest forward-only path, built from plain operators
            # (so tracing and export see ordinary convolutions).
            impl = choose_impl(self.kernel_size, needs_grad=False, compiling=False)
        return stft_separable(
            x,
            self.pointwise.weight,
            self.pointwise.bias,
            self.kernel_size,
            self.stride,
            self.padding,
            impl=impl,
            basis=self.stft.basis,
        )

    @torch.no_grad()
    def fold(self) -> nn.Conv2d:
        """An ``nn.Conv2d(C, F, n)`` computing the same function (for inference/export)."""
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.stft.padding_px,
            bias=self.pointwise.bias is not None,
            device=self.pointwise.weight.device,
            dtype=self.pointwise.weight.dtype,
        )
        conv.weight.copy_(fold_weight(self.pointwise.weight, self.stft.basis))
        if conv.bias is not None:
            conv.bias.copy_(self.pointwise.bias)
        return conv

    def extra_repr(self) -> str:
        return f"impl={self.impl!r}"


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
    of ``pointwise.weight``. ``impl="auto"`` (or ``"folded"``) runs it as one dense
    n_max × n_max convolution whose kernel is built from ``pointwise.weight`` (so it trains
    the same parameters); any other ``impl`` runs the per-size sum on that path.
    Stride 1, size-preserving padding. Trainable parameters: 8·C·len(kernel_sizes)·F (+F).
    Arguments after ``kernel_sizes`` are keyword-only.

    Shapes: (N, C, H, W) float → (N, F, H, W).
    """

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
        check_input(x, self.in_channels)
        if self.impl in ("auto", "folded"):
            # One dense n_max × n_max conv for all sizes: measured fastest for training and
            # inference at every block shape of the paper's networks (docs/architecture.md).
            pad = self.max_kernel_size // 2
            return F.conv2d(x, self._folded_kernel(), self.pointwise.bias, 1, pad)
        width = self.maps_width
        weight, out = self.pointwise.weight, None
        for i, stft in enumerate(self.stfts):
            part = stft_separable(
                x,
                weight[:, i * width : (i + 1) * width],
                self.pointwise.bias if i == 0 else None,
                stft.kernel_size,
                impl=self.impl,
                basis=stft.basis,
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


def set_impl(module: nn.Module, impl: str) -> nn.Module:
    """Set the execution path of every Depthwise-STFT separable layer inside ``module``
    (e.g. ``"grouped"`` to count the paper's multiply-adds). Returns ``module``."""
    check_impl(impl)
    for m in module.modules():
        if isinstance(m, (DepthwiseSTFTSeparable, MultiScaleSTFTSeparable)):
            m.impl = impl
    return module


#: Layers ``fold_model`` replaces by their ``.fold()`` convolution.
FOLDABLE = (DepthwiseSTFTSeparable, MultiScaleSTFTSeparable)


def fold_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every ``DepthwiseSTFTSeparable`` and
    ``MultiScaleSTFTSeparable`` replaced by its ``.fold()`` ``nn.Conv2d`` (in the same
    train/eval mode). Other modules, ReLPU included (its ReLU sits between the fixed bank
    and the trainable 1×1, so it does not fold), are copied unchanged.

    The copy computes the same function as ``model`` up to float rounding (about 1e-6
    relative in float32); it has more parameters wherever n² > 8 (an n×n kernel per
    input/output channel pair instead of 8 pointwise weights).
    """
    if isinstance(model, FOLDABLE):
        return model.fold().train(model.training)
    folded = copy.deepcopy(model)
    targets = [
        (parent, name, child)
        for parent in folded.modules()
        for name, child in parent.named_children()
        if isinstance(child, FOLDABLE)
    ]
    for parent, name, child in targets:
        setattr(parent, name, child.fold().train(child.training))
    return folded
