"""Inference export: fold the Depthwise-STFT separable layers into dense convolutions, then
write ONNX (``torch.onnx.export(..., dynamo=True)``) or TorchScript, and check the written
file against PyTorch on the same random input.

ONNX export and its check need the optional ``onnx``, ``onnxscript`` and ``onnxruntime``
packages (``pip install 'dwstft[export]'``); they are imported only when used.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from dwstft.bench.complexity import count_params
from dwstft.errors import MissingDependencyError
from dwstft.layers import DepthwiseSTFTSeparable, MultiScaleSTFTSeparable
from dwstft.models import create_model

FORMATS = ("onnx", "torchscript")
#: Layers ``fold_model`` replaces by their ``.fold()`` convolution.
FOLDABLE = (DepthwiseSTFTSeparable, MultiScaleSTFTSeparable)
#: Largest accepted max |exported - PyTorch| per unit of output scale (max(1, max |logit|)).
TOLERANCE = 1e-4
_ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def fold_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every ``DepthwiseSTFTSeparable`` and
    ``MultiScaleSTFTSeparable`` replaced by its ``.fold()`` ``nn.Conv2d`` (in the same
    train/eval mode). Other modules, ReLPU included (its ReLU sits between the fixed bank
    and the trainable 1×1, so it does not fold), are copied unchanged.

    The copy computes the same function as ``model`` up to float rounding (about 1e-6
    relative in float32); it has more parameters wherever n² > 8 (an n×n kernel per
    input/output channel pair instead of 8 pointwise weights).
    """
    if isinstance(model, FOLDABLE):
        return model.fold().train(model.training)
    folded = copy.deepcopy(model)
    targets = [
        (parent, name, child)
        for parent in folded.modules()
        for name, child in parent.named_children()
        if isinstance(child, FOLDABLE)
    ]
    for parent, name, child in targets:
        setattr(parent, name, child.fold().train(child.training))
    return folded


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


def check_state_fits(model: nn.Module, state: Mapping[str, torch.Tensor], name: str) -> None:
    """Raise ValueError unless ``state`` has exactly ``model``'s keys and shapes, naming
    the first differences."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: {tuple(state[k].shape)} (model: {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{len(items)} {kind} (first: {', '.join(items[:3])})"
            for kind, items in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", wrong),
            )
            if items
        ]
        classes = getattr(model, "num_classes", "?")
        raise ValueError(
            f"the checkpoint does not fit --model {name!r} (num_classes={classes}): "
            f"{'; '.join(parts)}. Expected weights saved from {name!r}; check --model, "
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


def require_onnx() -> None:
    """Raise MissingDependencyError (an ImportError) naming the missing packages unless ONNX
    export can run."""
    missing = [p for p in _ONNX_PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        raise MissingDependencyError(
            f"ONNX export needs {', '.join(_ONNX_PACKAGES)}; missing: {', '.join(missing)}. "
            "Install them with: pip install 'dwstft[export]'"
        )


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence exporter chatter that is not about the user's model: deprecation notices of
    torch.jit and pytree, and the ONNX registry's warnings about absent torchvision ops."""
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
            warnings.filterwarnings("ignore", category=FutureWarning, message=r".*treespec")
            yield
    finally:
        onnx_logger.setLevel(level)


def _example_input(batch: int, input_size: Sequence[int]) -> torch.Tensor:
    """A seeded standard-normal batch (batch, C, H, W) (the scale of normalised images)."""
    generator = torch.Generator().manual_seed(batch)
    return torch.randn(batch, *input_size, generator=generator)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_size: Sequence[int] = (3, 32, 32),
    opset: int | None = None,
) -> bool:
    """Write ``model`` (eval mode) as ONNX with ``torch.onnx.export(..., dynamo=True)``:
    input "input" (N, C, H, W), output "logits" (N, num_classes).

    The batch dimension is exported dynamic; if the exporter refuses, it is fixed at 2.
    Returns whether the batch dimension is dynamic. ``opset``: default, the exporter's.
    """
    require_onnx()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    example = (_example_input(2, input_size),)
    options: dict[str, Any] = {
        "dynamo": True,
        "input_names": ["input"],
        "output_names": ["logits"],
        "verbose": False,
    }
    if opset is not None:
        options["opset_version"] = opset
    dynamic = {0: torch.export.Dim("batch", min=1)}
    with _quiet_exporters(), torch.no_grad():
        try:
            program = torch.onnx.export(model, example, dynamic_shapes=(dynamic,), **options)
            dynamic_batch = True
        except Exception:  # the exporter raises many types; a fixed batch may still work
            program = torch.onnx.export(model, example, **options)
            dynamic_batch = False
        try:
            program.save(str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return dynamic_batch


def _short_reason(err: Exception) -> str:
    """The first line of a (TorchScript) error and, if it names one, the source line."""
    text = str(err).strip()
    first = text.splitlines()[0].rstrip(": ") if text else type(err).__name__
    where = re.search(r'File "([^"]+)", line (\d+)', text)
    return f"{first} at {Path(where[1]).name}:{where[2]}" if where else first


def export_torchscript(
    model: nn.Module, path: str | Path, input_size: Sequence[int] = (3, 32, 32)
) -> str:
    """Write ``model`` (eval mode) as TorchScript: ``torch.jit.script``, or
    ``torch.jit.trace`` on a batch of 2 where scripting fails.

    Returns how: "script", or "trace (script failed: <first line of the reason>)".
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with _quiet_exporters():
        try:
            compiled = torch.jit.script(model)
            method = "script"
        except Exception as err:  # torch.jit raises frontend, runtime and type errors
            reason = _short_reason(err)
            with torch.no_grad():
                compiled = torch.jit.trace(model, _example_input(2, input_size), check_trace=False)
            method = f"trace (script failed: {reason})"
        try:
            torch.jit.save(compiled, str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return method


@dataclass(frozen=True)
class Verification:
    """Exported model vs PyTorch on the same seeded inputs.

    ``max_abs_diff``: max |exported − PyTorch| over every batch and logit; ``scale``:
    max |PyTorch logit|; ``limit``: ``TOLERANCE · max(1, scale)``.
    """

    batches: tuple[int, ...]
    max_abs_diff: float
    scale: float
    limit: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.limit


def _run_exported(path: Path, fmt: str) -> tuple[Any, bool]:
    """A callable (N, C, H, W) tensor → logits array for the exported file, and whether it
    accepts any batch size."""
    if fmt == "onnx":
        require_onnx()
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        first = session.get_inputs()[0]
        dynamic = not isinstance(first.shape[0], int)
        return lambda x: session.run(None, {first.name: x.numpy()})[0], dynamic
    with _quiet_exporters():
        loaded = torch.jit.load(str(path), map_location="cpu")
    return lambda x: loaded(x).numpy(), True


def verify_export(
    path: str | Path,
    fmt: str,
    reference: nn.Module,
    input_size: Sequence[int] = (3, 32, 32),
) -> Verification:
    """Run the exported file (onnxruntime for ONNX, ``torch.jit.load`` for TorchScript)
    and ``reference`` (eval mode) on the same seeded standard-normal inputs: batch 2, and
    batch 1 too when the file accepts any batch size."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    run, dynamic = _run_exported(Path(path), fmt)
    batches = (2, 1) if dynamic else (2,)
    diff = scale = 0.0
    for batch in batches:
        x = _example_input(batch, input_size)
        with torch.no_grad():
            expected = reference(x)
            got = torch.as_tensor(run(x))
        if got.shape != expected.shape:
            raise ValueError(
                f"exported model returned shape {tuple(got.shape)} for batch {batch}, "
                f"expected {tuple(expected.shape)}"
            )
        diff = max(diff, (got - expected).abs().max().item())
        scale = max(scale, expected.abs().max().item())
    return Verification(batches, diff, scale, TOLERANCE * max(1.0, scale))


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_model` wrote and how well it matched PyTorch.

    ``method``: the exporter call ("torch.onnx.export(dynamo=True)", "torch.jit.script"
    or "torch.jit.trace (script failed: ...)"); ``dynamic_batch``: whether the file
    accepts any batch size; ``size_bytes``: of the written file; ``params``: trainable
    parameters of the model as given, ``exported_params`` of the graph written (more
    after folding when n² > 8).
    """

    path: Path
    fmt: str
    method: str
    dynamic_batch: bool
    size_bytes: int
    params: int
    exported_params: int
    folded: bool
    verification: Verification


def default_output(checkpoint: str | Path, fmt: str, fold: bool) -> Path:
    """``<checkpoint stem>[.folded].onnx`` or ``…torchscript.pt`` beside the checkpoint
    (never the checkpoint's own name)."""
    checkpoint = Path(checkpoint)
    suffix = ".onnx" if fmt == "onnx" else ".torchscript.pt"
    return checkpoint.with_name(checkpoint.stem + (".folded" if fold else "") + suffix)


def export_model(
    model: nn.Module,
    path: str | Path,
    fmt: str,
    *,
    fold: bool = False,
    input_size: Sequence[int] = (3, 32, 32),
    opset: int | None = None,
) -> ExportReport:
    """Export ``model`` (put in eval mode; folded first with ``fold``) to ``path`` as
    ``fmt`` ("onnx" or "torchscript"), then verify the file against ``model`` itself
    (:func:`verify_export`). ``input_size`` is (C, H, W) of one image."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")
    if len(input_size) != 3 or any(int(s) < 1 for s in input_size):
        raise ValueError(f"--input-size must be three positive ints C H W, got {input_size}")
    if opset is not None and fmt != "onnx":
        raise ValueError(f"--opset applies to --format onnx only, got --format {fmt!r}")
    model.eval()
    exported = fold_model(model) if fold else model
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        dynamic = export_onnx(exported, path, input_size, opset)
        method = "torch.onnx.export(dynamo=True)"
    else:
        method = f"torch.jit.{export_torchscript(exported, path, input_size)}"
        dynamic = True
    return ExportReport(
        path=path,
        fmt=fmt,
        method=method,
        dynamic_batch=dynamic,
        size_bytes=path.stat().st_size,
        params=count_params(model),
        exported_params=count_params(exported),
        folded=fold,
        verification=verify_export(path, fmt, model, input_size),
    )


def onnx_opset(path: str | Path) -> int | None:
    """The default-domain opset an ONNX file was written with (None if it names none)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
