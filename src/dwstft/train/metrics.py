"""Per-epoch metrics: on-device accumulation, the run folder's ``metrics.jsonl`` and
``summary.csv``, and optional TensorBoard scalars.

A record is a dict with :data:`COLUMNS`: ``epoch`` (1-based), ``train_loss`` (mean of the
optimised objective, label smoothing included, over the epoch's training samples),
``train_acc`` (fraction 0..1 on the augmented training batches), ``test_loss`` (plain
cross-entropy) and ``test_acc`` (fraction 0..1) on the whole test split, ``lr`` (of the
epoch's last step), ``batch_size`` (global), ``seconds`` (wall time of the epoch, training
and evaluation) and ``images_per_s`` (training throughput, all ranks together).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dwstft._atomic import atomic_write_text, read_text_file
from dwstft.train.distributed import DistContext, all_reduce_sum

COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "lr",
    "batch_size",
    "seconds",
    "images_per_s",
)

Record = dict[str, Any]


class Meter:
    """Sums of loss × samples, correct predictions and samples, kept on ``device`` so that
    updating never synchronises with it."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)

    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss: torch.Tensor) -> None:
        """Add a batch: ``logits`` (B, K), ``labels`` (B,), ``loss`` the batch's mean loss."""
        n = labels.shape[0]
        correct = (logits.argmax(dim=1) == labels).sum()
        batch = torch.stack([loss.detach().double() * n, correct.double()])
        self.sums[:2] += batch
        self.sums[2] += n

    def compute(self, ctx: DistContext) -> tuple[float, float, int]:
        """(mean loss, accuracy 0..1, samples) over every rank (a collective under DDP)."""
        total = all_reduce_sum(self.sums.clone(), ctx).tolist()
        loss_sum, correct, count = total
        if count == 0:
            raise ValueError("compute() needs at least one sample, got none")
        return loss_sum / count, correct / count, int(count)


def write_history(run_dir: str | Path, history: Sequence[Record]) -> None:
    """Rewrite ``metrics.jsonl`` (one JSON object per epoch) and ``summary.csv`` (a header
    then one row per epoch, :data:`COLUMNS`), each atomically."""
    run_dir = Path(run_dir)
    lines = "".join(json.dumps(r, sort_keys=False) + "\n" for r in history)
    atomic_write_text(run_dir / "metrics.jsonl", lines)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(run_dir / "summary.csv", buffer.getvalue())


def read_history(run_dir: str | Path, required: Sequence[str] = ()) -> list[Record]:
    """The records of ``run_dir/metrics.jsonl`` (one JSON object per line; blank lines
    skipped), each holding every key of ``required``.

    Raises:
        FileNotFoundError: the folder has no ``metrics.jsonl``.
        ValueError: the file is not UTF-8 text, a line is not valid JSON, or (with
            ``required``) not a JSON object holding those keys; the message names the line.
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
            raise ValueError(f"{path}:{number} is not valid JSON ({err.msg})") from None
        missing = [k for k in required if not isinstance(record, dict) or k not in record]
        if missing:
            raise ValueError(f"{path}:{number} lacks {missing}; expected keys {tuple(required)}")
        records.append(record)
    return records


class TensorBoardLogger:
    """Scalars per epoch under ``run_dir`` when ``torch.utils.tensorboard`` imports; a
    silent no-op otherwise (TensorBoard is optional)."""

    def __init__(self, run_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.writer = None
        else:
            self.writer = SummaryWriter(log_dir=str(run_dir))

    def log(self, record: Record) -> None:
        """Write every numeric column of ``record`` at step ``record["epoch"]``."""
        if self.writer is None:
            return
        for key in COLUMNS[1:]:
            self.writer.add_scalar(key, record[key], record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
