"""Pictures: the STFT basis kernels, an image's Depthwise-STFT maps, training curves of one
or several runs, and a model-benchmark scatter (cost against speed or accuracy).

Every figure is drawn on a bare Agg canvas (``matplotlib.figure.Figure``), so no global
pyplot state or display backend is touched, and written as PNG by :func:`save_figure`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from dwstft._atomic import atomic_write, prepare_output_file, read_text_file
from dwstft.errors import require
from dwstft.nn.basis import FREQUENCIES, MAPS_PER_CHANNEL, check_kernel_size, stft_basis
from dwstft.nn.functional import depthwise_stft

#: Resolution of every PNG written here (dots per inch).
DPI = 130
#: Diverging colormap for signed values, centred on 0 by symmetric limits.
DIVERGING = "RdBu_r"
#: Keys every ``metrics.jsonl`` record must hold to be plotted.
CURVE_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")
#: Loss panels switch to a log scale when the largest loss exceeds the smallest this often.
LOG_LOSS_RATIO = 30.0
#: Number of images in scikit-learn's bundled digits (``--image digits:N``).
DIGITS_COUNT = 1797

_MAP_NAMES = tuple(f"{part} v{k + 1}" for k in range(len(FREQUENCIES)) for part in ("Re", "Im"))


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


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _fraction(numerator: int, n: int) -> str:
    """``numerator / n`` written as a signed fraction: "0", "1/3", "-1/3"."""
    if numerator == 0:
        return "0"
    sign = "-" if numerator < 0 else ""
    return f"{sign}{abs(numerator)}/{n}" if abs(numerator) != n else f"{sign}1"


def frequency_label(index: int, n: int) -> str:
    """The title of basis map ``index`` (0..7) for size ``n``, e.g. "Re v1 = [1/3, 0]"."""
    fr, fc = FREQUENCIES[index // 2]
    return f"{_MAP_NAMES[index]} = [{_fraction(fr, n)}, {_fraction(fc, n)}]"


def _pixel_grid(ax: Any, height: int, width: int, max_grid: int = 16) -> None:
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
    fig = _figure(15.5, 2.0 * len(sizes) + 0.9)
    axes = fig.subplots(len(sizes), MAPS_PER_CHANNEL, squeeze=False)
    norm = colors.Normalize(vmin=-1.0, vmax=1.0)
    image = None
    for row, n in zip(axes, sizes, strict=True):
        basis = stft_basis(n, dtype=torch.float64).numpy()
        for k, ax in enumerate(row):
            image = ax.imshow(basis[k], cmap=DIVERGING, norm=norm, interpolation="nearest")
            _pixel_grid(ax, n, n)
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


def load_image(spec: str, max_size: int = 128) -> tuple[np.ndarray, str]:
    """An image as a float array (C, H, W) in [0, 1] (C = 1 greyscale or 3 RGB) and a name.

    ``spec`` is a file PIL can read (PNG, JPEG, ...; alpha is dropped, palettes become RGB,
    16-bit and float greyscale is stretched to [0, 1]) or ``"digits:N"``: the N-th image
    (8×8, 0 <= N < 1797) of scikit-learn's bundled digits.
    Images whose longer side exceeds ``max_size`` pixels are shrunk to it (0: never), so
    that each pixel's 3×3 neighbourhood stays visible in the figure.
    """
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0 (0: no limit), got {max_size}")
    if spec.startswith("digits:"):
        index_text = spec.partition(":")[2]
        if not index_text.isdigit() or int(index_text) >= DIGITS_COUNT:
            raise ValueError(f"--image {spec!r}: expected digits:N with 0 <= N < {DIGITS_COUNT}")
        require("sklearn", "data", "--image digits:N")
        from sklearn.datasets import load_digits

        digits = load_digits()
        index = int(index_text)
        pixels = digits.images[index][None].astype(np.float32) / 16.0
        return pixels, f"digit {index} (label {digits.target[index]})"
    from PIL import Image, UnidentifiedImageError

    path = Path(spec)
    if path.is_dir():
        raise ValueError(f"--image {spec!r} is a folder; pass an image file or digits:N")
    if not path.is_file():
        raise FileNotFoundError(f"--image {spec!r} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            deep = img.mode.startswith(("I", "F"))  # 16/32-bit integer or float greyscale
            mode = "F" if deep else "L" if img.mode in ("1", "L", "LA") else "RGB"
            img = img.convert(mode)
    except UnidentifiedImageError as err:
        raise ValueError(f"--image {spec!r} is not an image PIL can read") from err
    if max_size and max(img.size) > max_size:
        img.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    pixels = np.asarray(img, dtype=np.float32)
    # 8-bit images have white at 255; deeper ones have no fixed white: stretch to [0, 1].
    low, high = (float(pixels.min()), float(pixels.max())) if deep else (0.0, 255.0)
    pixels = (pixels - low) / ((high - low) or 1.0)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels), path.name


def features_figure(image: np.ndarray, kernel_size: int = 3, title: str = "") -> Figure:
    """An image and its Depthwise-STFT maps: one row per channel, columns = the channel,
    then Re/Im of v1..v4 (``depthwise_stft`` with zero "same" padding).

    Args:
        image: (C, H, W) or (H, W) float array, values in [0, 1].
        kernel_size: n, odd >= 3.
        title: shown above the figure (e.g. the image's name).

    Each map has its own symmetric colour scale [-m, m], written in its title: m is the
    largest |value| away from the n // 2 pixel frame that the zero padding reaches (the
    whole map for images smaller than 4·(n // 2) + 1 pixels); values beyond are clipped.
    The colour bar reads value / m.
    """
    n = check_kernel_size(kernel_size)
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim != 3:
        raise ValueError(f"image must be (C, H, W) or (H, W), got shape {pixels.shape}")
    channels, height, width = pixels.shape
    maps = depthwise_stft(torch.from_numpy(pixels)[None], n)[0].numpy()
    r = n // 2
    # The colour scale ignores the r-pixel frame touched by the zero padding (when the
    # image is large enough to have an interior), so image edges do not wash out the rest.
    inner = np.s_[r:-r, r:-r] if min(height, width) > 4 * r else np.s_[:, :]
    names = ("grey",) if channels == 1 else ("red", "green", "blue", "alpha")[:channels]
    if channels > 4:
        names = tuple(f"channel {c}" for c in range(channels))
    cols = 1 + MAPS_PER_CHANNEL
    panel = 1.55
    fig = _figure(panel * cols + 0.8, panel * height / width * channels + 1.0)
    axes = fig.subplots(channels, cols, squeeze=False)
    unit = colors.Normalize(vmin=-1.0, vmax=1.0)
    scaled = None
    for c, row in enumerate(axes):
        row[0].imshow(pixels[c], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        row[0].set_title(f"{names[c]} input", fontsize=9)
        row[0].set_ylabel(names[c], fontsize=11)
        for k in range(MAPS_PER_CHANNEL):
            values = maps[c * MAPS_PER_CHANNEL + k]
            scale = float(np.abs(values[inner]).max()) or 1.0
            scaled = row[k + 1].imshow(
                np.clip(values / scale, -1.0, 1.0),
                cmap=DIVERGING,
                norm=unit,
                interpolation="nearest",
            )
            row[k + 1].set_title(f"{_MAP_NAMES[k]}  ±{scale:.3g}", fontsize=9)
        for ax in row:
            _pixel_grid(ax, height, width)
    fig.colorbar(
        scaled, ax=axes, shrink=0.9, aspect=30, pad=0.01, label="value / m (per-map scale)"
    )
    heading = f"Depthwise-STFT maps, n = {n} (a = 1/{n})"
    fig.suptitle(f"{heading}: {title}" if title else heading, fontsize=12)
    return fig


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of ``run_dir/metrics.jsonl`` (one JSON object per line).

    Raises:
        FileNotFoundError: the folder has no ``metrics.jsonl``.
        ValueError: a line is not a JSON object with :data:`CURVE_KEYS`, or there is none.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"run folder {str(run_dir)!r} has no metrics.jsonl")
    records = []
    for number, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number} is not valid JSON ({err.msg})") from err
        missing = [k for k in CURVE_KEYS if not isinstance(record, dict) or k not in record]
        if missing:
            raise ValueError(f"{path}:{number} lacks {missing}; expected keys {CURVE_KEYS}")
        records.append(record)
    if not records:
        raise ValueError(f"{path} holds no records; expected one JSON object per epoch")
    return records


def run_labels(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None) -> list[str]:
    """Legend names: ``labels`` if given (one per run), else each folder's name, or its
    full path where two folders share a name."""
    if labels is not None:
        if len(labels) != len(run_dirs):
            raise ValueError(
                f"--labels has {len(labels)} names, expected one per run folder ({len(run_dirs)})"
            )
        return list(labels)
    names = [Path(d).resolve().name for d in run_dirs]
    if len(set(names)) < len(names):
        return [str(d) for d in run_dirs]
    return names


def curves_figure(runs: Mapping[str, Sequence[Mapping[str, Any]]], title: str = "") -> Figure:
    """Loss and accuracy (%) against the epoch for one or several runs, overlaid.

    Args:
        runs: legend name → that run's records (``metrics.jsonl`` lines: ``epoch``,
            ``train_loss``, ``test_loss``, ``train_acc`` and ``test_acc`` as fractions
            0..1, optionally ``batch_size``).
        title: shown above both panels.

    One colour per run; training dashed, test solid. A dotted vertical line in the run's
    colour marks each epoch where ``batch_size`` changes; a star marks each run's best test
    accuracy, which its legend entry also states. The loss axis is logarithmic when the
    losses span more than a factor :data:`LOG_LOSS_RATIO` (early test-loss spikes).
    """
    if not runs:
        raise ValueError("runs must hold at least one run, got none")
    for name, history in runs.items():
        if not history:
            raise ValueError(f"run {name!r} has no records; expected one per epoch")
    fig = _figure(12.0, 4.6)
    loss_ax, acc_ax = fig.subplots(1, 2)
    palette = [f"C{i}" for i in range(10)]
    run_handles = []
    marked: set[tuple[float, Any]] = set()
    for (name, history), color in zip(runs.items(), itertools.cycle(palette)):
        epochs = [r["epoch"] for r in history]
        marker = "o" if len(history) <= 30 else None
        for ax, key, scale in ((loss_ax, "loss", 1.0), (acc_ax, "acc", 100.0)):
            for split, style in (("train", "--"), ("test", "-")):
                values = [scale * r[f"{split}_{key}"] for r in history]
                ax.plot(epochs, values, style, color=color, marker=marker, ms=3, lw=1.6)
        best = max(history, key=lambda r: r["test_acc"])
        acc_ax.plot(best["epoch"], 100 * best["test_acc"], "*", color=color, ms=13, mec="k")
        label = f"{name} (best test {100 * best['test_acc']:.2f}%, epoch {best['epoch']})"
        run_handles.append(Line2D([], [], color=color, lw=2.5, label=label))
        for prev, cur in itertools.pairwise(history):
            if cur.get("batch_size") != prev.get("batch_size"):
                x = cur["epoch"] - 0.5
                for ax in (loss_ax, acc_ax):
                    ax.axvline(x, color=color, ls=":", lw=1.3)
                if (x, cur.get("batch_size")) not in marked:
                    marked.add((x, cur.get("batch_size")))
                    # Loss falls, so the top of the loss panel is usually free after
                    # the first epochs.
                    loss_ax.annotate(
                        f"batch {prev.get('batch_size')} → {cur.get('batch_size')}",
                        (x, 0.97),
                        xycoords=("data", "axes fraction"),
                        xytext=(-3, 0),
                        textcoords="offset points",
                        rotation=90,
                        ha="right",
                        va="top",
                        fontsize=8,
                        color="0.3",
                    )
    losses = [r[k] for h in runs.values() for r in h for k in ("train_loss", "test_loss")]
    positive = [v for v in losses if v > 0]
    log_loss = bool(positive) and max(positive) > LOG_LOSS_RATIO * min(positive)
    if log_loss:
        loss_ax.set_yscale("log")
    loss_label = "cross-entropy loss" + (" (log scale)" if log_loss else "")
    loss_ax.set(xlabel="epoch", ylabel=loss_label, title="Loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    style_handles = [
        Line2D([], [], color="0.3", ls="--", label="train"),
        Line2D([], [], color="0.3", ls="-", label="test"),
    ]
    loss_ax.legend(handles=style_handles, loc="center right", fontsize=9)
    fig.legend(
        handles=run_handles,
        loc="outside lower center",
        ncols=min(len(run_handles), 3),
        fontsize=9,
        frameon=False,
    )
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def plot_curves(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path, title: str = ""
) -> Path:
    """Render :func:`curves_figure` and write it as PNG to ``path``. A single run's
    ``curves.png`` is ``plot_curves({name: history}, path)``."""
    return save_figure(curves_figure(runs, title), path)


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
    fig = _figure(8.5, 6.0)
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
