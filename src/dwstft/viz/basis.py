"""The Depthwise-STFT basis as a picture: the 8 real kernels of ``stft_basis(n)`` for each
kernel size, as in the paper's Fig. 2 (``dwstft viz basis``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib import colors
from matplotlib.figure import Figure

from dwstft._figure import new_figure
from dwstft.nn.basis import FREQUENCIES, MAPS_PER_CHANNEL, check_kernel_size, stft_basis

#: Diverging colormap for signed values, centred on 0 by symmetric limits.
DIVERGING = "RdBu_r"
#: The names of the 8 maps per channel, in channel order: Re v1, Im v1, ..., Im v4.
MAP_NAMES = tuple(f"{part} v{k + 1}" for k in range(len(FREQUENCIES)) for part in ("Re", "Im"))


def _fraction(numerator: int, n: int) -> str:
    """``numerator / n`` written as a signed fraction: "0", "1/3", "-1/3"."""
    if numerator == 0:
        return "0"
    sign = "-" if numerator < 0 else ""
    return f"{sign}{abs(numerator)}/{n}" if abs(numerator) != n else f"{sign}1"


def frequency_label(index: int, n: int) -> str:
    """The title of basis map ``index`` (0..7) for size ``n``, e.g. "Re v1 = [1/3, 0]"."""
    fr, fc = FREQUENCIES[index // 2]
    return f"{MAP_NAMES[index]} = [{_fraction(fr, n)}, {_fraction(fc, n)}]"


def pixel_grid(ax: Any, height: int, width: int, max_grid: int = 16) -> None:
    """Hide the axis ticks; outline every pixel when the map is small enough to see them."""
    ax.set_xticks([])
    ax.set_yticks([])
    if max(height, width) <= max_grid:
        ax.set_xticks(np.arange(-0.5, width, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, height, 1), minor=True)
        ax.grid(which="minor", color="0.25", linewidth=0.6)
        ax.tick_params(which="minor", length=0)


def basis_figure(kernel_sizes: Sequence[int] = (3, 5, 7)) -> Figure:
    """The 8 real kernels of ``stft_basis(n)`` (Re/Im of K_v for v1..v4) for each ``n``:
    one row per n, one column per kernel, as in the paper's Fig. 2.

    All panels share one diverging colour scale on [-1, 1] (the kernels are cosines and
    sines) with one colour bar; row i is the row offset, column j the column offset of
    the n×n neighbourhood. For n <= 5 each pixel also shows its value.
    """
    if not kernel_sizes:
        raise ValueError("kernel_sizes must name at least one odd size >= 3, got none")
    sizes = [check_kernel_size(n) for n in kernel_sizes]
    fig = new_figure(15.5, 2.0 * len(sizes) + 0.9)
    axes = fig.subplots(len(sizes), MAPS_PER_CHANNEL, squeeze=False)
    norm = colors.Normalize(vmin=-1.0, vmax=1.0)
    image = None
    for row, n in zip(axes, sizes, strict=True):
        basis = stft_basis(n, dtype=torch.float64).numpy()
        for k, ax in enumerate(row):
            image = ax.imshow(basis[k], cmap=DIVERGING, norm=norm, interpolation="nearest")
            pixel_grid(ax, n, n)
            ax.set_title(frequency_label(k, n), fontsize=10)
            if n <= 5:
                for (i, j), value in np.ndenumerate(basis[k]):
                    shade = "white" if abs(value) > 0.6 else "black"
                    text = f"{value:.2f}".replace("-0.00", "0.00")
                    ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color=shade)
        row[0].set_ylabel(f"n = {n}", fontsize=12)
    fig.colorbar(image, ax=axes, shrink=0.9, aspect=30, pad=0.01, label="kernel value")
    fig.suptitle(
        "Depthwise-STFT basis: real and imaginary parts of $e^{+j2\\pi v^T u}$ "
        "over the n×n neighbourhood (a = 1/n)",
        fontsize=13,
    )
    return fig
