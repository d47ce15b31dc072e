"""``dwstft bench layer``: the Depthwise-STFT separable layer's execution paths against
three references, forward + backward, side by side.

References (same input, same batch, in one run):
- R0: a plain 1×1 conv 8C → F on precomputed maps: the lower bound, the layer's own
  pointwise product and nothing else.
- R1: ``nn.Conv2d`` depthwise n×n + 1×1 C → F, the standard depthwise-separable layer.
- R2: dense ``nn.Conv2d(C, F, n)``.
Every input requires grad, as it does inside a network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dwstft.bench.measure import machine_description, saved_bytes, time_interleaved
from dwstft.functional import IMPLS, choose_impl
from dwstft.layers import DepthwiseSTFTSeparable

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


@dataclass
class LayerResult:
    """One benchmark case: seconds and saved bytes per candidate (R0..R2, paths, auto)."""

    channels: int
    features: int
    size: int
    kernel_size: int
    auto_path: str
    seconds: dict[str, float]
    saved: dict[str, int]


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


def run_layer_benchmark(
    shapes: tuple[tuple[int, int, int], ...] = SHAPES,
    kernel_sizes: tuple[int, ...] = KERNEL_SIZES,
    batch: int = 64,
    rounds: int = 7,
    device: str | torch.device = "cpu",
    channels_last: bool = False,
    compile_auto: bool = False,
    progress: bool = True,
) -> list[LayerResult]:
    """Time forward + backward of every candidate at every (shape, n); see module doc.

    ``compile_auto`` adds ``torch.compile(layer)`` as candidate ``compiled`` (its compile
    time is spent in the warm-up round and not counted)."""
    from tqdm.auto import tqdm

    device = torch.device(device)
    cases = [(s, n) for s in shapes for n in kernel_sizes]
    results = []
    for (c, f, hw), n in tqdm(cases, desc="bench layer", disable=not progress):
        torch.manual_seed(0)
        cands = _candidates(c, f, hw, n, batch, device, channels_last, compile_auto)
        steps = {name: _train_step(m, t) for name, (m, t) in cands.items()}
        seconds = time_interleaved(steps, rounds=rounds)
        saved = {name: saved_bytes(lambda m=m, t=t: m(t)) for name, (m, t) in cands.items()}
        results.append(LayerResult(c, f, hw, n, choose_impl(n, True, False), seconds, saved))
    return results


def format_layer_table(
    results: list[LayerResult], batch: int, device: torch.device, channels_last: bool
) -> str:
    """Markdown: time ratios to R0 and R1, saved-for-backward MiB and its ratio to R1."""
    extra = ["compiled"] if "compiled" in results[0].seconds else []
    names = [*REFERENCES, *PATHS, *extra, "auto"]
    fmt = "channels_last" if channels_last else "NCHW"
    lines = [
        f"Forward+backward, batch {batch}, float32, {fmt}; "
        f"{machine_description(device)}. Median of interleaved rounds.",
        "",
        "Time: R0 in ms, everything else as a ratio to R0 (lower is better); "
        "`auto` names the path it took"
        + ("; `compiled` is `torch.compile` of the auto layer." if extra else "."),
        "",
        "| C | F | HW | n | R0 ms | " + " | ".join(names[1:]) + " | auto / R1 |",
        "|" + "---|" * (len(names) + 5),
    ]
    for r in results:
        r0 = r.seconds["R0"]
        ratios = [f"{r.seconds[k] / r0:.2f}" for k in names[1:-1]]
        auto = f"**{r.seconds['auto'] / r0:.2f}** ({r.auto_path})"
        lines.append(
            f"| {r.channels} | {r.features} | {r.size} | {r.kernel_size} | {r0 * 1e3:.1f} | "
            + " | ".join([*ratios, auto])
            + f" | {r.seconds['auto'] / r.seconds['R1']:.2f} |"
        )
    lines += [
        "",
        "Saved for backward: MiB (ratio to R1).",
        "",
        "| C | F | HW | n | " + " | ".join(names) + " |",
        "|" + "---|" * (len(names) + 4),
    ]
    for r in results:
        r1 = r.saved["R1"]
        cells = [f"{r.saved[k] / 2**20:.1f} ({r.saved[k] / r1:.2f})" for k in names]
        lines.append(
            f"| {r.channels} | {r.features} | {r.size} | {r.kernel_size} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)
