"""Training curves: loss and accuracy against the epoch for one or several runs, drawn
into each run's ``curves.png`` by the training loop and by ``dwstft viz curves``.

matplotlib is an extra (``dwstft[viz]``): the loop imports this module only when it draws,
and trains on without it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from dwstft._figure import new_figure, save_figure

#: Keys every ``metrics.jsonl`` record must hold to be plotted.
CURVE_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")
#: Loss panels switch to a log scale when the largest loss exceeds the smallest this often.
LOG_LOSS_RATIO = 30.0


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
    fig = new_figure(12.0, 4.6)
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
        _mark_batch_changes(loss_ax, acc_ax, history, color, marked)
    _finish_axes(loss_ax, acc_ax, runs)
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


def _mark_batch_changes(
    loss_ax: Axes,
    acc_ax: Axes,
    history: Sequence[Mapping[str, Any]],
    color: str,
    marked: set[tuple[float, Any]],
) -> None:
    """A dotted line in both panels between the epochs where ``batch_size`` changes, and
    the change written once per (position, new size) at the top of the loss panel."""
    for prev, cur in itertools.pairwise(history):
        if cur.get("batch_size") == prev.get("batch_size"):
            continue
        x = cur["epoch"] - 0.5
        for ax in (loss_ax, acc_ax):
            ax.axvline(x, color=color, ls=":", lw=1.3)
        if (x, cur.get("batch_size")) in marked:
            continue
        marked.add((x, cur.get("batch_size")))
        # Loss falls, so the top of the loss panel is usually free after the first epochs.
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


def _finish_axes(
    loss_ax: Axes, acc_ax: Axes, runs: Mapping[str, Sequence[Mapping[str, Any]]]
) -> None:
    """Scales, labels, grids and the train/test style legend of both panels."""
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


def plot_curves(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path, title: str = ""
) -> Path:
    """Render :func:`curves_figure` and write it as PNG to ``path``. A single run's
    ``curves.png`` is ``plot_curves({name: history}, path)``."""
    return save_figure(curves_figure(runs, title), path)
