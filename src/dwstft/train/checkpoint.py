"""Crash-safe files: atomic writes, the resumable ``last.pt`` and the weights-only
``best.safetensors``.

Every file is written to a temporary file in the destination's folder, flushed to disk and
then ``os.replace``d over the destination, so a crash or Ctrl-C leaves either the old file
or the new one, never a torn one. ``last.pt`` holds only tensors and plain Python values,
so it loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from dwstft._atomic import atomic_write, atomic_write_bytes, atomic_write_text

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_KEYS",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_checkpoint",
    "load_weights",
    "save_checkpoint",
    "save_weights",
]

#: Version of the ``last.pt`` layout; bumped when keys change meaning.
CHECKPOINT_FORMAT = 1
CHECKPOINT_KEYS = ("format", "epoch", "model", "optimizer", "scaler", "best", "history", "config")


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write a resumable checkpoint atomically.

    ``state`` holds :data:`CHECKPOINT_KEYS` except ``format``: ``epoch`` (completed epochs),
    ``model``/``optimizer``/``scaler`` state dicts (``scaler`` empty without a GradScaler),
    ``best`` ({"test_acc": float, "epoch": int}), ``history`` (the per-epoch metric records)
    and ``config`` (:meth:`TrainConfig.to_dict`).
    """
    missing = [k for k in CHECKPOINT_KEYS if k != "format" and k not in state]
    if missing:
        raise ValueError(f"state is missing checkpoint keys {missing}")
    payload = {"format": CHECKPOINT_FORMAT, **state}
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``, on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{str(path)!r} is not a dwstft checkpoint of format {CHECKPOINT_FORMAT} "
            f"(found {found!r})"
        )
    return state


def save_weights(
    path: str | Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> None:
    """Write model weights atomically as safetensors, with string ``metadata``."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=dict(metadata)))


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Model weights and run information from ``best.safetensors`` or ``last.pt``.

    Returns (state_dict on the CPU, info): for safetensors ``info`` is the file's metadata
    (strings: model, dataset, epoch, test_acc); for ``last.pt`` it is the saved config plus
    ``epoch``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            info: dict[str, Any] = dict(f.metadata() or {})
        return load_file(str(path)), info
    state = load_checkpoint(path)
    return state["model"], {**state["config"], "epoch": state["epoch"]}
