"""Training curves of one or several run folders (``dwstft viz curves``): each folder's
``metrics.jsonl`` read by :func:`dwstft.train.metrics.read_history`, drawn by
:func:`dwstft.train.curves.plot_curves` (the picture every run writes as ``curves.png``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dwstft.train.curves import CURVE_KEYS
from dwstft.train.metrics import Record, read_history


def read_run(run_dir: str | Path) -> list[Record]:
    """The records of ``run_dir/metrics.jsonl`` to plot: every one a JSON object with
    :data:`~dwstft.train.curves.CURVE_KEYS`, at least one.

    Raises:
        FileNotFoundError: the folder has no ``metrics.jsonl``.
        ValueError: a line is not such an object, or there is none.
    """
    records = read_history(run_dir, CURVE_KEYS)
    if not records:
        path = Path(run_dir) / "metrics.jsonl"
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
