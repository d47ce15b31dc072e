"""Figures drawn on a bare Agg canvas (``matplotlib.figure.Figure``), so that no global
pyplot state or display backend is touched, and written as PNG atomically: the one place
that makes and saves the pictures of ``dwstft viz`` and of each run's ``curves.png``.

matplotlib is an extra (``dwstft[viz]``): import this module only when drawing.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dwstft._atomic import atomic_write, prepare_output_file

#: Resolution of every PNG written here (dots per inch).
DPI = 130


def check_png_output(path: str | Path) -> Path:
    """Check that a PNG can be written at ``path`` (see
    :func:`dwstft._atomic.prepare_output_file`; parent folders are created).

    Raises:
        ValueError: ``path`` does not end in ``.png``, or cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"--output must be a .png file, got {str(path)!r}")
    return prepare_output_file(path)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path`` (parent folders are created). Returns the path.

    The PNG is written to a temporary file beside ``path`` and renamed over it, so a
    picture rewritten every epoch is never left half-written.

    Raises:
        ValueError: ``path`` does not end in ``.png``.
    """
    path = check_png_output(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
    return path


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` × ``height`` inches with constrained layout, on its own
    Agg canvas."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig
