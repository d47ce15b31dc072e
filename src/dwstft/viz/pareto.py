"""A model-benchmark scatter: one labelled point per model of a ``dwstft bench models``
JSON file, cost against speed or accuracy, with the Pareto front (``dwstft viz pareto``)."""

from __future__ import annotations

import json
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from dwstft._figure import new_figure, save_figure

#: Axis labels (and the factor applied to the values) of the benchmark fields.
_FIELD_LABELS: dict[str, tuple[str, float]] = {
    "params": ("trainable parameters (M)", 1e-6),
    "macs": ("multiply-accumulates per 32×32 image (M)", 1e-6),
    "cifar10_acc": ("CIFAR-10 test accuracy (%)", 1.0),
    "cifar100_acc": ("CIFAR-100 test accuracy (%)", 1.0),
}
_FIELD_PATTERNS: tuple[tuple[str, str, float], ...] = (
    (r"train_ips_b(\d+)", "training throughput, batch {} (images/s)", 1.0),
    (r"infer_ips_b(\d+)", "inference throughput, batch {} (images/s)", 1.0),
    (r"latency_b(\d+)_ms", "inference latency, batch {} (ms)", 1.0),
    (r"saved_bytes_b(\d+)", "memory saved for backward, batch {} (MiB)", 1 / 2**20),
    (r"peak_bytes_b(\d+)", "peak memory, batch {} (MiB)", 1 / 2**20),
)
#: Fields where a larger value is better (the others: smaller is better).
_HIGHER_IS_BETTER = re.compile(r"(train|infer)_ips_b\d+|cifar\d+_acc")
_LOWER_IS_BETTER = re.compile(r"params|macs|latency_b\d+_ms|(saved|peak)_bytes_b\d+")


def field_label(field: str) -> tuple[str, float]:
    """A benchmark field's human-readable axis label and the factor its values are shown
    with (e.g. ``"params"`` → ("trainable parameters (M)", 1e-6))."""
    if field in _FIELD_LABELS:
        return _FIELD_LABELS[field]
    for pattern, label, scale in _FIELD_PATTERNS:
        match = re.fullmatch(pattern, field)
        if match:
            return label.format(match.group(1)), scale
    return field.replace("_", " "), 1.0


def load_bench(path: str | Path) -> dict[str, Any]:
    """Read a ``dwstft bench models`` JSON file: {"device", "command", "date", "models":
    [{"model": name, numeric fields...}, ...]}.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, or no "models" list of objects with a "model" name.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file {str(path)!r} does not exist")
    try:
        bench = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from err
    models = bench.get("models") if isinstance(bench, dict) else None
    if not isinstance(models, list) or not all(
        isinstance(m, dict) and isinstance(m.get("model"), str) for m in models
    ):
        raise ValueError(
            f"{path} must hold a 'models' list of objects with a 'model' name, "
            "as written by `dwstft bench models`"
        )
    return bench


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def numeric_fields(bench: Mapping[str, Any]) -> list[str]:
    """The fields holding a number in at least one model record, in first-seen order."""
    fields: dict[str, None] = {}
    for record in bench["models"]:
        for key, value in record.items():
            if _is_number(value):
                fields.setdefault(key)
    return list(fields)


def pareto_points(
    bench: Mapping[str, Any], x: str = "params", y: str = "train_ips_b64"
) -> tuple[list[tuple[str, float, float]], list[str]]:
    """The (model, x, y) points of a benchmark and the models skipped for lacking x or y.

    Raises:
        ValueError: ``x`` or ``y`` is a numeric field of no model (names the choices).
    """
    fields = numeric_fields(bench)
    for option, field in (("--x", x), ("--y", y)):
        if field not in fields:
            raise ValueError(
                f"{option} {field!r} is not a numeric field of the benchmark; "
                f"expected one of: {', '.join(fields)}"
            )
    points, skipped = [], []
    for record in bench["models"]:
        if _is_number(record.get(x)) and _is_number(record.get(y)):
            points.append((record["model"], float(record[x]), float(record[y])))
        else:
            skipped.append(record["model"])
    return points, skipped


def _frontier(points: Sequence[tuple[float, float]], x: str, y: str) -> list[tuple[float, float]]:
    """The non-dominated points, sorted by x, when both fields have a known better
    direction; otherwise none."""
    directions = []
    for field in (x, y):
        if _HIGHER_IS_BETTER.fullmatch(field):
            directions.append(1.0)
        elif _LOWER_IS_BETTER.fullmatch(field):
            directions.append(-1.0)
        else:
            return []
    sx, sy = directions

    def dominated(p: tuple[float, float]) -> bool:
        return any(sx * q[0] >= sx * p[0] and sy * q[1] >= sy * p[1] and q != p for q in points)

    return sorted(p for p in points if not dominated(p))


def _minor_log_label(value: float, _: int) -> str:
    """Label the minor ticks 2·10^k and 5·10^k of a log axis (e.g. 0.2, 5, 50)."""
    if value <= 0:
        return ""
    leading = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if leading in (2, 5) else ""


def _place_labels(fig: Figure, ax: Any, points: Sequence[tuple[str, float, float]]) -> None:
    """Write each point's name beside it at the first of eight offsets whose box stays
    inside the axes and overlaps no marker, no label placed before and not the legend (or,
    if every offset collides somewhere, at the one with the fewest collisions)."""
    offsets = [(7, 5), (7, -12), (-7, 5), (-7, -12), (0, 10), (0, -17), (12, -4), (-12, -4)]
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()
    frame = ax.get_window_extent(renderer)
    obstacles = []
    for _, px, py in points:
        cx, cy = ax.transData.transform((px, py))
        obstacles.append((cx - 5, cy - 5, cx + 5, cy + 5))
    legend = ax.get_legend()
    if legend is not None:
        box = legend.get_window_extent(renderer)
        obstacles.append((box.x0, box.y0, box.x1, box.y1))

    def collisions(rect: tuple[float, float, float, float]) -> int:
        outside = not (
            frame.x0 <= rect[0]
            and rect[2] <= frame.x1
            and frame.y0 <= rect[1] <= rect[3] <= frame.y1
        )
        return outside + sum(
            rect[0] < o[2] and o[0] < rect[2] and rect[1] < o[3] and o[1] < rect[3]
            for o in obstacles
        )

    for name, px, py in points:
        best = None
        for dx, dy in offsets:
            text = ax.annotate(
                name,
                (px, py),
                xytext=(dx, dy),
                textcoords="offset points",
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                fontsize=8.5,
            )
            box = text.get_window_extent(renderer)
            rect = (box.x0, box.y0, box.x1, box.y1)
            score = collisions(rect)
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, text, rect)
            else:
                text.remove()
            if score == 0:
                break
        obstacles.append(best[2])


def pareto_figure(
    bench: Mapping[str, Any],
    x: str = "params",
    y: str = "train_ips_b64",
    logx: bool = False,
) -> tuple[Figure, list[str]]:
    """One labelled point per benchmarked model: STFTNet presets (``stftnet_*``) as blue
    circles, baselines as orange squares; a dashed step line joins the non-dominated
    models when both fields have a known better direction.

    Args:
        bench: as returned by :func:`load_bench`.
        x, y: numeric fields of the model records (e.g. "params", "train_ips_b64").
        logx: logarithmic x axis.

    Returns:
        (figure, names of the models skipped for lacking x or y).
    """
    points, skipped = pareto_points(bench, x, y)
    if not points:
        raise ValueError(f"no model has both {x!r} and {y!r}; nothing to plot")
    (xlabel, xscale), (ylabel, yscale) = field_label(x), field_label(y)
    shown = [(name, px * xscale, py * yscale) for name, px, py in points]
    fig = new_figure(8.5, 6.0)
    ax = fig.subplots()
    groups = (
        ("STFTNet (ours)", "C0", "o", lambda m: m.startswith("stftnet")),
        ("baselines", "C1", "s", lambda m: not m.startswith("stftnet")),
    )
    for label, color, marker, member in groups:
        sel = [(px, py) for name, px, py in shown if member(name)]
        if sel:
            ax.scatter(*zip(*sel, strict=True), s=55, c=color, marker=marker, label=label, zorder=3)
    front = _frontier([(px, py) for _, px, py in shown], x, y)
    if len(front) > 1:
        fx, fy = zip(*front, strict=True)
        ax.step(fx, fy, where="post", color="0.55", ls="--", lw=1, label="Pareto front", zorder=2)
    if logx:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor_log_label))
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.margins(0.12)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    heading = f"{ylabel.split(' (')[0]} against {xlabel.split(' (')[0]}"
    fig.suptitle(heading[0].upper() + heading[1:], fontsize=12)
    details = [str(bench[k]) for k in ("device", "date") if bench.get(k)]
    ax.set_title(textwrap.fill(" · ".join(details), 100), fontsize=8.5, color="0.35")
    _place_labels(fig, ax, shown)
    return fig, skipped


def plot_pareto(
    bench: Mapping[str, Any],
    path: str | Path,
    x: str = "params",
    y: str = "train_ips_b64",
    logx: bool = False,
) -> list[str]:
    """Render :func:`pareto_figure` as PNG to ``path``; returns the skipped models."""
    fig, skipped = pareto_figure(bench, x, y, logx)
    save_figure(fig, path)
    return skipped
