"""``dwstft bench layer``: the Depthwise-STFT separable layer's execution paths against
three references, forward + backward, side by side.

References (same input, same batch, in one run):
- R0: a plain 1×1 conv 8C → F on precomputed maps: the lower bound, the layer's own
  pointwise product and nothing else.
- R1: ``nn.Conv2d`` depthwise n×n + 1×1 C → F, the standard depthwise-separable layer.
- R2: dense ``nn.Conv2d(C, F, n)``.
Every input requires grad, as it does inside a network.

``dims=1`` and ``dims=3`` run the same comparison for ``DepthwiseSTFTSeparable1d`` /
``DepthwiseSTFTSeparable3d`` (M = 2, 8 or 26 maps per channel instead of 8) against
``nn.Conv1d`` / ``nn.Conv3d`` references, at an audio-like and a video-like shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dwstft.bench.measure import machine_description, saved_bytes, time_interleaved
from dwstft.nn.basis import check_kernel_size_nd
from dwstft.nn.functional import IMPLS, IMPLS_ND, choose_impl
from dwstft.nn.layers import (
    DepthwiseSTFTSeparable,
    DepthwiseSTFTSeparable1d,
    DepthwiseSTFTSeparable3d,
)

#: (in channels C, out channels F, height = width) of the issue's benchmark grid.
SHAPES: tuple[tuple[int, int, int], ...] = (
    (16, 128, 32),
    (32, 128, 32),
    (64, 128, 16),
    (64, 256, 16),
    (128, 128, 8),
)
KERNEL_SIZES = (3, 5)
REFERENCES = ("R0", "R1", "R2")
PATHS = tuple(p for p in IMPLS if p != "auto")
PATHS_ND = tuple(p for p in IMPLS_ND if p != "auto")
#: (C, F, spatial size) per number of spatial dimensions: an audio-like 1-D signal and the
#: issue's video shape (T = 16 frames of 32×32).
SHAPES_ND: dict[int, tuple[tuple[int, int, tuple[int, ...]], ...]] = {
    1: ((64, 128, (2048,)),),
    3: ((32, 64, (16, 32, 32)),),
}
KERNEL_SIZES_ND: dict[int, tuple[tuple[int, ...], ...]] = {
    1: ((3,), (5,), (9,), (15,), (21,)),
    3: ((3, 3, 3), (1, 3, 3), (3, 1, 1), (5, 5, 5)),
}
#: Default batch per number of spatial dimensions.
BATCH_BY_DIMS = {1: 32, 2: 64, 3: 8}


@dataclass
class LayerResult:
    """One benchmark case: seconds and saved bytes per candidate (R0..R2, paths, auto)."""

    channels: int
    features: int
    size: int | tuple[int, ...]
    kernel_size: int | tuple[int, ...]
    auto_path: str
    seconds: dict[str, float]
    saved: dict[str, int]


def layer_cases(
    dims: int, kernel_sizes: list[tuple[int, ...]] | None = None
) -> tuple[tuple, tuple]:
    """(shapes, kernel sizes) of ``dwstft bench layer --dims``: the defaults above, or the
    given kernel sizes (single-int tuples for n, (T, H, W) in 3-D), validated."""
    if dims == 2:
        if kernel_sizes and any(len(k) != 1 for k in kernel_sizes):
            raise ValueError("--kernel-sizes: 2-D kernels are square; give single ints n")
        return SHAPES, tuple(k[0] for k in kernel_sizes) if kernel_sizes else KERNEL_SIZES
    sizes = tuple(
        check_kernel_size_nd(k[0] if len(k) == 1 else k, dims)
        for k in kernel_sizes or KERNEL_SIZES_ND[dims]
    )
    return SHAPES_ND[dims], sizes


def _train_step(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        module(x).sum().backward()

    return step


def _candidates(
    c: int,
    f: int,
    hw: int,
    n: int,
    batch: int,
    device: torch.device,
    channels_last: bool,
    compile_auto: bool,
) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def tensor(channels: int) -> torch.Tensor:
        t = torch.randn(batch, channels, hw, hw, device=device).contiguous(memory_format=fmt)
        return t.requires_grad_()

    x = tensor(c)
    pad = n // 2
    cands: dict[str, tuple[nn.Module, torch.Tensor]] = {
        "R0": (nn.Conv2d(8 * c, f, 1), tensor(8 * c)),
        "R1": (
            nn.Sequential(
                nn.Conv2d(c, c, n, padding=pad, groups=c, bias=False), nn.Conv2d(c, f, 1)
            ),
            x,
        ),
        "R2": (nn.Conv2d(c, f, n, padding=pad), x),
    }
    for impl in (*PATHS, "auto"):
        cands[impl] = (DepthwiseSTFTSeparable(c, f, n, impl=impl), x)
    if compile_auto:
        cands["compiled"] = (torch.compile(DepthwiseSTFTSeparable(c, f, n)), x)
    return {k: (m.to(device=device, memory_format=fmt), t) for k, (m, t) in cands.items()}


def _candidates_nd(
    c: int,
    f: int,
    size: tuple[int, ...],
    kernel_size: tuple[int, ...],
    batch: int,
    device: torch.device,
    compile_auto: bool,
) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """R0/R1/R2 and every path of the 1-D or 3-D layer, on one input."""
    layer_cls = DepthwiseSTFTSeparable1d if len(size) == 1 else DepthwiseSTFTSeparable3d
    conv_cls = nn.Conv1d if len(size) == 1 else nn.Conv3d
    maps = layer_cls(c, f, kernel_size).maps_per_channel

    def tensor(channels: int) -> torch.Tensor:
        return torch.randn(batch, channels, *size, device=device).requires_grad_()

    x = tensor(c)
    pad = tuple(n // 2 for n in kernel_size)
    cands: dict[str, tuple[nn.Module, torch.Tensor]] = {
        "R0": (conv_cls(maps * c, f, 1), tensor(maps * c)),
        "R1": (
            nn.Sequential(
                conv_cls(c, c, kernel_size, padding=pad, groups=c, bias=False),
                conv_cls(c, f, 1),
            ),
            x,
        ),
        "R2": (conv_cls(c, f, kernel_size, padding=pad), x),
    }
    for impl in (*PATHS_ND, "auto"):
        cands[impl] = (layer_cls(c, f, kernel_size, impl=impl), x)
    if compile_auto:
        cands["compiled"] = (torch.compile(layer_cls(c, f, kernel_size)), x)
    return {k: (m.to(device), t) for k, (m, t) in cands.items()}


def run_layer_benchmark(
    shapes: tuple[tuple[int, int, int], ...] = SHAPES,
    kernel_sizes: tuple[int, ...] = KERNEL_SIZES,
    batch: int = 64,
    rounds: int = 7,
    device: str | torch.device = "cpu",
    channels_last: bool = False,
    compile_auto: bool = False,
    progress: bool = True,
    dims: int = 2,
) -> list[LayerResult]:
    """Time forward + backward of every candidate at every (shape, n); see module doc.

    ``compile_auto`` adds ``torch.compile(layer)`` as candidate ``compiled`` (its compile
    time is spent in the warm-up round and not counted). With ``dims`` 1 or 3, ``shapes``
    hold (C, F, spatial size tuple) and ``kernel_sizes`` kernel-size tuples, and
    ``channels_last`` is ignored."""
    from tqdm.auto import tqdm

    device = torch.device(device)
    cases = [(s, n) for s in shapes for n in kernel_sizes]
    results = []
    for (c, f, size), n in tqdm(cases, desc="bench layer", disable=not progress):
        torch.manual_seed(0)
        if dims == 2:
            cands = _candidates(c, f, size, n, batch, device, channels_last, compile_auto)
        else:
            cands = _candidates_nd(c, f, size, n, batch, device, compile_auto)
        auto_path = choose_impl(check_kernel_size_nd(n, dims), needs_grad=True)
        steps = {name: _train_step(m, t) for name, (m, t) in cands.items()}
        seconds = time_interleaved(steps, rounds=rounds)
        saved = {name: saved_bytes(lambda m=m, t=t: m(t)) for name, (m, t) in cands.items()}
        results.append(LayerResult(c, f, size, n, auto_path, seconds, saved))
    return results


def _size_text(size: int | tuple[int, ...]) -> str:
    return "×".join(str(s) for s in size) if isinstance(size, tuple) else str(size)


def format_layer_table(
    results: list[LayerResult], batch: int, device: torch.device, channels_last: bool
) -> str:
    """Markdown: time ratios to R0 and R1, saved-for-backward MiB and its ratio to R1."""
    paths = [k for k in results[0].seconds if k not in (*REFERENCES, "compiled", "auto")]
    extra = ["compiled"] if "compiled" in results[0].seconds else []
    names = [*REFERENCES, *paths, *extra, "auto"]
    fmt = "channels_last" if channels_last else "NCHW"
    size_name = "HW" if isinstance(results[0].size, int) else "size"
    lines = [
        f"Forward+backward, batch {batch}, float32, {fmt}; "
        f"{machine_description(device)}. Median of interleaved rounds.",
        "",
        "Time: R0 in ms, everything else as a ratio to R0 (lower is better); "
        "`auto` names the path it took"
        + ("; `compiled` is `torch.compile` of the auto layer." if extra else "."),
        "",
        f"| C | F | {size_name} | n | R0 ms | " + " | ".join(names[1:]) + " | auto / R1 |",
        "|" + "---|" * (len(names) + 5),
    ]
    for r in results:
        r0 = r.seconds["R0"]
        ratios = [f"{r.seconds[k] / r0:.2f}" for k in names[1:-1]]
        auto = f"**{r.seconds['auto'] / r0:.2f}** ({r.auto_path})"
        lines.append(
            f"| {r.channels} | {r.features} | {_size_text(r.size)} | "
            f"{_size_text(r.kernel_size)} | {r0 * 1e3:.1f} | "
            + " | ".join([*ratios, auto])
            + f" | {r.seconds['auto'] / r.seconds['R1']:.2f} |"
        )
    lines += [
        "",
        "Saved for backward: MiB (ratio to R1).",
        "",
        f"| C | F | {size_name} | n | " + " | ".join(names) + " |",
        "|" + "---|" * (len(names) + 4),
    ]
    for r in results:
        r1 = r.saved["R1"]
        cells = [f"{r.saved[k] / 2**20:.1f} ({r.saved[k] / r1:.2f})" for k in names]
        lines.append(
            f"| {r.channels} | {r.features} | {_size_text(r.size)} | "
            f"{_size_text(r.kernel_size)} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)
