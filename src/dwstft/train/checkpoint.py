"""Crash-safe files: atomic writes, the resumable ``last.pt`` and the weights-only
``best.safetensors``.

Every file is written to a temporary file in the destination's folder, flushed to disk and
then ``os.replace``d over the destination, so a crash or Ctrl-C leaves either the old file
or the new one, never a torn one. ``last.pt`` holds only tensors and plain Python values,
so it loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from dwstft._atomic import atomic_write, atomic_write_bytes, atomic_write_text
from dwstft.errors import CheckpointError
from dwstft.models import create_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_KEYS",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "key_mismatch",
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


def existing_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path if it names an existing file; otherwise an error saying what is
    there instead (nothing, or a folder) and what to pass."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"{what} {str(path)!r} is a folder; pass the file inside it (a run folder holds "
            "last.pt and best.safetensors)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    return path


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _damaged(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {str(path)!r} is damaged or not a dwstft last.pt ({reason}); resume from "
        "an intact last.pt or start a new run"
    )


def _check_structure(path: Path, state: Any) -> None:
    """Raise CheckpointError unless ``state`` has every key of :data:`CHECKPOINT_KEYS` with
    the type :func:`save_checkpoint` writes."""
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise _damaged(path, f"expected a dict of format {CHECKPOINT_FORMAT}, found {found!r}")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise _damaged(path, f"missing {', '.join(missing)}")
    model = state["model"]
    if not (
        isinstance(model, dict)
        and model
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items())
    ):
        raise _damaged(path, "'model' is not a state dict of tensors")
    optimizer = state["optimizer"]
    if not (
        isinstance(optimizer, dict)
        and isinstance(optimizer.get("state"), dict)
        and isinstance(optimizer.get("param_groups"), list)
    ):
        raise _damaged(path, "'optimizer' is not an optimizer state dict")
    epoch = state["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise _damaged(path, f"'epoch' must be an int >= 0, got {epoch!r}")
    best = state["best"]
    if not (isinstance(best, dict) and {"test_acc", "epoch"} <= set(best)):
        raise _damaged(path, "'best' lacks test_acc/epoch")
    if not isinstance(state["history"], list) or not all(
        isinstance(r, dict) for r in state["history"]
    ):
        raise _damaged(path, "'history' is not a list of records")
    if not isinstance(state["scaler"], dict) or not isinstance(state["config"], dict):
        raise _damaged(path, "'scaler' or 'config' is not a dict")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``, on CPU).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: a folder, or a file that is truncated, damaged, of another format
            or missing part of the state (the message names the file and the problem).
    """
    path = existing_file(path, "checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types on damaged bytes
        raise _damaged(path, _first_line(err)) from err
    _check_structure(path, state)
    return state


def counted(kind: str, items: Sequence[str], shown: int = 3) -> str:
    """``"12 missing keys (first: a, b, c)"``: how many ``items`` and the first ``shown``."""
    return f"{len(items)} {kind} (first: {', '.join(items[:shown])})"


def key_mismatch(expected: Iterable[str], found: Iterable[str]) -> str:
    """How the keys of a state dict (``found``) differ from a model's (``expected``), in
    counts and first keys: ``"336 missing keys (first: ...); 184 unexpected keys (first:
    ...)"``, each part only when there are such keys; "" when the keys agree. A state dict
    of another model can differ in hundreds of keys, so they are never all listed."""
    expected, found = list(expected), list(found)
    known, present = set(expected), set(found)
    missing = [key for key in expected if key not in present]
    unexpected = [key for key in found if key not in known]
    parts = (("missing keys", missing), ("unexpected keys", unexpected))
    return "; ".join(counted(kind, keys) for kind, keys in parts if keys)


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

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: a folder, or a file that cannot be read as either format.
    """
    path = existing_file(path, "checkpoint")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                info: dict[str, Any] = dict(f.metadata() or {})
                state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
        except Exception as err:  # safetensors raises its own and OS/IO error types
            raise CheckpointError(
                f"checkpoint {str(path)!r} is not a readable safetensors file "
                f"({_first_line(err)}); use an intact best.safetensors or last.pt"
            ) from err
        if not state:
            raise CheckpointError(f"checkpoint {str(path)!r} holds no tensors")
        return state, info
    state = load_checkpoint(path)
    return state["model"], {**state["config"], "epoch": state["epoch"]}


def load_state_dict_file(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """Model weights from a checkpoint file, and the model name it records (or None).

    ``path`` is a ``.safetensors`` state dict (e.g. a run's ``best.safetensors``; its
    metadata may name the model) or a ``torch.save`` file read with ``weights_only=True``:
    a training checkpoint holding the state dict under ``"model"`` (e.g. ``last.pt``; its
    ``"config"`` names the model) or a bare state dict.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no recognisable state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
        except SafetensorError as err:
            raise ValueError(f"--checkpoint {str(path)!r} is not a valid safetensors file") from err
        return state, metadata.get("model")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"--checkpoint {str(path)!r} cannot be read with torch.load(weights_only=True) "
            f"({type(err).__name__}); expected a .safetensors file or a torch.save'd "
            "state dict / training checkpoint"
        ) from err
    name = None
    if isinstance(saved, dict) and isinstance(saved.get("model"), dict):
        config = saved.get("config")
        name = config.get("model") if isinstance(config, dict) else None
        saved = saved["model"]
    if not (
        isinstance(saved, dict)
        and saved
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in saved.items())
    ):
        raise ValueError(
            f"--checkpoint {str(path)!r} holds no state dict; expected a mapping of parameter "
            "names to tensors, bare or under the key 'model'"
        )
    return saved, name if isinstance(name, str) else None


def recorded_dataset(path: str | Path) -> str | None:
    """The dataset a checkpoint says its weights were trained on: ``best.safetensors``'s
    metadata or ``last.pt``'s config (None if it records none or cannot be read)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return (f.metadata() or {}).get("dataset")
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable files are reported by load_state_dict_file
        return None
    config = saved.get("config") if isinstance(saved, dict) else None
    dataset = config.get("dataset") if isinstance(config, dict) else None
    return dataset if isinstance(dataset, str) else None


def default_input_size(checkpoint: str | Path, in_chans: int) -> tuple[int, ...]:
    """One input sample's shape for exporting ``checkpoint``: a sample of the dataset it
    records (:func:`recorded_dataset`; ``dwstft.data.sample_shape``: (C, H, W), or
    (C, T, H, W) for clips) with ``in_chans`` channels, or (in_chans, 32, 32) when it
    records none.

    Raises:
        ValueError: the checkpoint records a dataset this version does not know.
    """
    from dwstft.data import DATASET_NAMES, sample_shape

    dataset = recorded_dataset(checkpoint)
    if dataset is None:
        return (in_chans, 32, 32)
    if dataset not in DATASET_NAMES:
        raise ValueError(
            f"--checkpoint {str(checkpoint)!r} records dataset {dataset!r}, which is not one "
            f"of {', '.join(DATASET_NAMES)}; pass --input-size C H W"
        )
    return (in_chans, *sample_shape(dataset)[1:])


def check_state_fits(model: nn.Module, state: Mapping[str, torch.Tensor], name: str) -> None:
    """Raise ValueError unless ``state`` has exactly ``model``'s keys and shapes, naming
    the first differences."""
    expected = model.state_dict()
    wrong = [
        f"{k}: {tuple(state[k].shape)} (model: {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    parts = [key_mismatch(expected, state)]
    if wrong:
        parts.append(counted("shape mismatches", wrong))
    detail = "; ".join(part for part in parts if part)
    if detail:
        classes = getattr(model, "num_classes", "?")
        raise ValueError(
            f"the checkpoint does not fit --model {name!r} (num_classes={classes}): "
            f"{detail}. Expected weights saved from {name!r}; check --model, "
            "--num-classes and --in-chans"
        )


def infer_model_args(name: str, state: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """(num_classes, in_chans) of the registered model ``name`` that ``state`` was saved
    from: the rows of the classifier's ``head.weight``, and the input channels read off the
    first weight whose shape differs from ``name`` built with one input channel (its
    differing dimension is in_chans times as large, as for any convolution, or the STFT
    stem's 8·in_chans pointwise inputs).

    Raises:
        ValueError: ``state`` lacks those weights or their shapes fit no channel count
            (the message names the keys that do not fit ``name``).
    """
    head = state.get("head.weight")
    if head is None or head.dim() != 2:
        raise ValueError(
            f"the checkpoint has no 2-D 'head.weight' to read num_classes from; expected "
            f"weights saved from --model {name!r}, or pass --num-classes"
        )
    num_classes = int(head.shape[0])
    probe = create_model(name, num_classes=num_classes, in_chans=1)
    for key, expected in probe.state_dict().items():
        saved = state.get(key)
        if saved is None or saved.dim() != expected.dim():
            break
        if saved.shape != expected.shape:
            pairs = zip(saved.shape, expected.shape, strict=True)
            dims = [d for d, (a, b) in enumerate(pairs) if a != b]
            in_chans, rest = divmod(saved.shape[dims[0]], expected.shape[dims[0]])
            if len(dims) == 1 and not rest and in_chans > 1:
                return num_classes, in_chans
            break
    # Either every weight fits the one-channel model, or this raises, naming the misfits.
    check_state_fits(probe, state, name)
    return num_classes, 1


class LoadedModel(NamedTuple):
    """A model rebuilt from a checkpoint (CPU, eval mode) and how it was built."""

    model: nn.Module
    name: str
    num_classes: int
    in_chans: int


def model_from_checkpoint(
    path: str | Path,
    name: str | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
) -> LoadedModel:
    """Build the registered model and load a checkpoint's weights strictly, in eval mode.

    Args:
        path: see :func:`load_state_dict_file`.
        name: registered model name; default: the one the checkpoint records.
        num_classes, in_chans: default: inferred from the weights (:func:`infer_model_args`).

    Returns:
        The model (on the CPU, in eval mode), its name, num_classes and in_chans.

    Raises:
        ValueError: no model name is given or recorded, or the weights do not fit.
    """
    state, recorded = load_state_dict_file(path)
    name = name or recorded
    if name is None:
        raise ValueError(f"--model is required: {str(path)!r} does not record which model it holds")
    if num_classes is None or in_chans is None:
        inferred_classes, inferred_chans = infer_model_args(name, state)
        num_classes = inferred_classes if num_classes is None else num_classes
        in_chans = inferred_chans if in_chans is None else in_chans
    model = create_model(name, num_classes=num_classes, in_chans=in_chans)
    check_state_fits(model, state, name)
    model.load_state_dict(state, strict=True)
    return LoadedModel(model.eval(), name, num_classes, in_chans)
