"""Checkpoints: the resumable ``last.pt`` and the weights-only ``best.safetensors``, written
crash-safe, and the one place that reads weights and rebuilds a model from them.

Every file is written to a temporary file in the destination's folder, flushed to disk and
then ``os.replace``d over the destination, so a crash or Ctrl-C leaves either the old file
or the new one, never a torn one. ``last.pt`` holds only tensors and plain Python values,
so it loads with ``torch.load(..., weights_only=True)``.

Reading: :func:`load_checkpoint` reads the whole training state of ``last.pt`` (to resume);
:func:`load_weights` reads the weights of any checkpoint (``.safetensors``, ``last.pt``, a
bare ``torch.save``'d state dict) with what it records; :func:`build_model` and
:func:`model_from_checkpoint` rebuild the registered model those weights fit. Every file
that cannot be read, or holds no weights, is a :class:`~dwstft.errors.CheckpointError`
naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
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
    "build_model",
    "check_state_fits",
    "infer_model_args",
    "key_mismatch",
    "load_checkpoint",
    "load_weights",
    "model_from_checkpoint",
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


def _is_state_dict(value: Any) -> bool:
    """Whether ``value`` is a non-empty dict of parameter names to tensors."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
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
    if not _is_state_dict(state["model"]):
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


@dataclass(frozen=True)
class Weights:
    """A checkpoint's model weights and what the file records about its run.

    ``state``: parameter name → tensor, on the CPU. ``info``: for ``.safetensors`` the
    file's metadata (strings: model, dataset, run_id, epoch, test_acc); for a
    ``torch.save``'d training checkpoint its ``config`` (model, dataset, run_id, every
    setting) plus ``epoch`` (an int); for a bare state dict, empty.
    """

    path: Path
    state: dict[str, torch.Tensor]
    info: dict[str, Any]

    def recorded(self, key: str) -> str | None:
        """The string the checkpoint records under ``key`` ("model", "dataset", "run_id"),
        or None."""
        value = self.info.get(key)
        return value if isinstance(value, str) else None


def load_weights(path: str | Path) -> Weights:
    """The model weights in ``path`` and what it records: a ``.safetensors`` file (e.g. a
    run's ``best.safetensors``) or a ``torch.save`` file read with ``weights_only=True``,
    holding a training checkpoint with the state dict under ``"model"`` (e.g. ``last.pt``)
    or a bare state dict.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: a folder, a file that cannot be read as its format, or one that
            holds no state dict (the message names the file).
    """
    path = existing_file(path, "checkpoint")
    if path.suffix == ".safetensors":
        state, info = _read_safetensors(path)
    else:
        state, info = _read_torch_save(path)
    if not _is_state_dict(state):
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds no state dict; expected a mapping of parameter "
            "names to tensors, bare or under the key 'model'"
        )
    return Weights(path, state, info)


def _read_safetensors(path: Path) -> tuple[Any, dict[str, Any]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            info: dict[str, Any] = dict(f.metadata() or {})
            state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own and OS/IO error types
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a valid safetensors file ({_first_line(err)}); "
            "use an intact best.safetensors or last.pt"
        ) from err
    return state, info


def _read_torch_save(path: Path) -> tuple[Any, dict[str, Any]]:
    """The state dict a ``torch.save`` file holds (bare, or under ``"model"`` with the
    run's ``config`` and ``epoch`` beside it) and what it records."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types on damaged or foreign bytes
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read with torch.load(weights_only=True) "
            f"({type(err).__name__}); expected a .safetensors file or a torch.save'd "
            "state dict / training checkpoint"
        ) from err
    if not (isinstance(saved, dict) and isinstance(saved.get("model"), dict)):
        return saved, {}
    config = saved.get("config")
    info = dict(config) if isinstance(config, dict) else {}
    epoch = saved.get("epoch")
    if isinstance(epoch, int) and not isinstance(epoch, bool):
        info["epoch"] = epoch
    return saved["model"], info


#: What to do when weights do not fit, where the model is given by --model, --num-classes
#: and --in-chans (``dwstft export``).
FIT_ADVICE = "check --model, --num-classes and --in-chans"


def check_state_fits(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    name: str,
    path: str | Path | None = None,
    advice: str = FIT_ADVICE,
) -> None:
    """Raise CheckpointError unless ``state`` has exactly ``model``'s keys and shapes; the
    message names the checkpoint ``path`` (if given), counts the differences, shows the
    first ones, and ends with ``advice``."""
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
        what = "the checkpoint" if path is None else f"checkpoint {str(path)!r}"
        classes = getattr(model, "num_classes", "?")
        raise CheckpointError(
            f"{what} does not fit --model {name!r} (num_classes={classes}): {detail}. "
            f"Expected weights saved from {name!r}; {advice}"
        )


def infer_model_args(
    name: str, state: Mapping[str, torch.Tensor], path: str | Path | None = None
) -> tuple[int, int]:
    """(num_classes, in_chans) of the registered model ``name`` that ``state`` was saved
    from: the rows of the classifier's ``head.weight``, and the input channels read off the
    first weight whose shape differs from ``name`` built with one input channel (its
    differing dimension is in_chans times as large, as for any convolution, or the STFT
    stem's 8·in_chans pointwise inputs).

    Raises:
        CheckpointError: ``state`` lacks those weights or their shapes fit no channel
            count (the message names the keys that do not fit ``name``).
    """
    head = state.get("head.weight")
    if head is None or head.dim() != 2:
        raise CheckpointError(
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
    check_state_fits(probe, state, name, path)
    return num_classes, 1


class LoadedModel(NamedTuple):
    """A model rebuilt from a checkpoint (CPU, eval mode), how it was built, and the
    dataset its checkpoint records (None if none)."""

    model: nn.Module
    name: str
    num_classes: int
    in_chans: int
    dataset: str | None
    path: Path

    def input_size(self) -> tuple[int, ...]:
        """One input sample's shape: a sample of the recorded dataset
        (``dwstft.data.sample_shape``: (C, H, W), or (C, T, H, W) for clips) with
        ``in_chans`` channels, or (in_chans, 32, 32) when the checkpoint records none.

        Raises:
            ValueError: the checkpoint records a dataset this version does not know.
        """
        from dwstft.data import DATASET_NAMES, sample_shape

        if self.dataset is None:
            return (self.in_chans, 32, 32)
        if self.dataset not in DATASET_NAMES:
            raise ValueError(
                f"--checkpoint {str(self.path)!r} records dataset {self.dataset!r}, which is "
                f"not one of {', '.join(DATASET_NAMES)}; pass --input-size C H W"
            )
        return (self.in_chans, *sample_shape(self.dataset)[1:])


def build_model(
    weights: Weights,
    name: str | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    advice: str = FIT_ADVICE,
) -> LoadedModel:
    """Build the registered model and load ``weights`` into it strictly, in eval mode.

    Args:
        weights: from :func:`load_weights`.
        name: registered model name; default: the one the checkpoint records.
        num_classes, in_chans: default: inferred from the weights (:func:`infer_model_args`).
        advice: what the error says to do when the weights do not fit.

    Raises:
        ValueError: no model name is given or recorded.
        CheckpointError: the weights do not fit the model (:func:`check_state_fits`).
    """
    name = name or weights.recorded("model")
    if name is None:
        raise ValueError(
            f"--model is required: {str(weights.path)!r} does not record which model it holds"
        )
    if num_classes is None or in_chans is None:
        inferred_classes, inferred_chans = infer_model_args(name, weights.state, weights.path)
        num_classes = inferred_classes if num_classes is None else num_classes
        in_chans = inferred_chans if in_chans is None else in_chans
    model = create_model(name, num_classes=num_classes, in_chans=in_chans)
    check_state_fits(model, weights.state, name, weights.path, advice)
    model.load_state_dict(weights.state, strict=True)
    dataset = weights.recorded("dataset")
    return LoadedModel(model.eval(), name, num_classes, in_chans, dataset, weights.path)


def model_from_checkpoint(
    path: str | Path,
    name: str | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
) -> LoadedModel:
    """The model a checkpoint holds: :func:`load_weights` then :func:`build_model`."""
    return build_model(load_weights(path), name, num_classes, in_chans)
