"""Inference export: turn a trained model into an inference graph (``OPTIMIZATIONS``: the
deployment graph of ``dwstft.deploy``, tuned for onnxruntime or portable, the folded
Depthwise-STFT layers, or the model as it is), write ONNX
(``torch.onnx.export(..., dynamo=True)``) or TorchScript, and check the written file
against the unmodified PyTorch model on the same random input.

ONNX export and its check need the optional ``onnx``, ``onnxscript`` and ``onnxruntime``
packages (``pip install 'dwstft[export]'``); they are imported only when used.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from dwstft._atomic import atomic_write_bytes, prepare_output_file
from dwstft.bench.complexity import count_params
from dwstft.deploy import FORM_CHOICES, FormTiming, Rewrites, choose_layer_forms, deployment_model
from dwstft.errors import DwstftError, MissingDependencyError, OutputPathError
from dwstft.models import create_model
from dwstft.nn.model_ops import FOLDABLE, fold_model
from dwstft.train.checkpoint import counted, key_mismatch

if TYPE_CHECKING:  # dwstft.quantize loads the datasets' dependencies: imported when used
    from dwstft.quantize import DatasetArrays, QuantizedAccuracy

FORMATS = ("onnx", "torchscript")
#: Quantized exports (``dwstft.quantize``).
QUANTIZATIONS = ("int8",)
#: What is exported: "onnxruntime", the deployment graph (``dwstft.deploy``) with layer
#: forms timed in onnxruntime and Conv+Add+activation fused into onnxruntime's FusedConv
#: (ONNX only; the file needs onnxruntime); "portable", the deployment graph in standard
#: operators; "fold", only the Depthwise-STFT layers folded (``fold_model``); "none", the
#: model as it is.
OPTIMIZATIONS = ("onnxruntime", "portable", "fold", "none")
#: Largest accepted max |exported - PyTorch| per unit of output scale (max(1, max |logit|)).
TOLERANCE = 1e-4
_ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


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


def check_export_output(output: str | Path, checkpoint: str | Path, force: bool = False) -> Path:
    """Refuse, before any work, an ``output`` that would replace the checkpoint, a file of
    a run folder (a folder holding any of ``RUN_FILES``: ``config.json``, ``last.pt``,
    ``best.safetensors``, ...) that bears a run file's name, or, unless ``force``, any
    existing file. Returns ``output`` as a Path.

    Raises:
        OutputPathError: naming the file and what to do instead.
    """
    from dwstft.train.run_folder import RUN_FILES, holds_a_run

    output = Path(output)
    if output.resolve() == Path(checkpoint).resolve():
        raise OutputPathError(
            f"--output {str(output)!r} would overwrite the checkpoint; choose another --output"
        )
    folder = output.resolve().parent
    if output.name in RUN_FILES and holds_a_run(folder):
        raise OutputPathError(
            f"--output {str(output)!r} is the {output.name} of the run folder {str(folder)!r}, "
            "which an export never replaces; choose another --output"
        )
    if (output.exists() or output.is_symlink()) and not output.is_dir() and not force:
        raise OutputPathError(
            f"--output {str(output)!r} already exists; pass --force to replace it, or choose "
            "another --output"
        )
    return output


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


class OnnxWritten(NamedTuple):
    """What :func:`export_onnx` wrote: whether the batch dimension is dynamic, and how many
    Conv+Add+activation chains became onnxruntime FusedConv nodes."""

    dynamic_batch: bool
    fused_convs: int


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_size: Sequence[int] = (3, 32, 32),
    opset: int | None = None,
    *,
    fuse_for_onnxruntime: bool = False,
) -> OnnxWritten:
    """Write ``model`` (eval mode) as ONNX with ``torch.onnx.export(..., dynamo=True)``:
    input "input" (N, C, H, W), output "logits" (N, num_classes); atomically (a temporary
    file renamed into place).

    The batch dimension is exported dynamic; if the exporter refuses, it is fixed at 2.
    ``opset``: default, the exporter's. ``fuse_for_onnxruntime``: rewrite Conv → Add →
    activation into onnxruntime's FusedConv (``dwstft.ort_graph``).
    """
    require_onnx()
    from dwstft.ort_graph import fuse_conv_add_activation

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
    proto = program.model_proto
    fused = fuse_conv_add_activation(proto) if fuse_for_onnxruntime else 0
    atomic_write_bytes(path, proto.SerializeToString())
    return OnnxWritten(dynamic_batch, fused)


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
    with _quiet_exporters():
        try:
            compiled = torch.jit.script(model)
            method = "script"
        except Exception as err:  # torch.jit raises frontend, runtime and type errors
            reason = _short_reason(err)
            with torch.no_grad():
                compiled = torch.jit.trace(model, _example_input(2, input_size), check_trace=False)
            method = f"trace (script failed: {reason})"
        buffer = io.BytesIO()
        torch.jit.save(compiled, buffer)
    atomic_write_bytes(path, buffer.getvalue())
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
    after folding when n² > 8); ``optimize``: one of ``OPTIMIZATIONS``; ``rewrites``: the
    deployment rewrites applied (None unless "onnxruntime" or "portable");
    ``layer_forms``: the per-layer form timings ("onnxruntime" with measured forms);
    ``fused_convs``: Conv+Add+activation chains written as onnxruntime FusedConv;
    ``quantized``: for an int8 export, float vs int8 accuracy on the calibration dataset's
    test split (``verification`` then checks the float graph the int8 model came from).
    """

    path: Path
    fmt: str
    method: str
    dynamic_batch: bool
    size_bytes: int
    params: int
    exported_params: int
    optimize: str
    verification: Verification
    rewrites: Rewrites | None = None
    layer_forms: tuple[FormTiming, ...] = ()
    fused_convs: int = 0
    quantized: QuantizedAccuracy | None = None

    @property
    def folded(self) -> bool:
        """Whether the Depthwise-STFT layers were folded (or otherwise rewritten)."""
        return self.optimize != "none"


def default_optimization(fmt: str, quantize: str | None = None) -> str:
    """The ``optimize`` a format gets unless told: "onnxruntime" for ONNX ("portable" when
    quantizing: the quantizer needs standard operators), "none" for TorchScript."""
    if fmt != "onnx":
        return "none"
    return "portable" if quantize else "onnxruntime"


_OUTPUT_TAGS = {"onnxruntime": ".ort", "portable": ".deploy", "fold": ".folded", "none": ""}


def default_output(
    checkpoint: str | Path, fmt: str, optimize: str, quantize: str | None = None
) -> Path:
    """``<checkpoint stem>[.ort|.deploy|.folded][.int8].onnx`` or ``…torchscript.pt``
    beside the checkpoint (never the checkpoint's own name)."""
    checkpoint = Path(checkpoint)
    suffix = ".onnx" if fmt == "onnx" else ".torchscript.pt"
    tag = _OUTPUT_TAGS[optimize] + (f".{quantize}" if quantize else "")
    return checkpoint.with_name(checkpoint.stem + tag + suffix)


@dataclass(frozen=True)
class PreparedModel:
    """The module to export for an ``optimize`` choice, with what was done to it."""

    module: nn.Module
    rewrites: Rewrites | None
    layer_forms: tuple[FormTiming, ...]


def prepare_model(
    model: nn.Module,
    optimize: str,
    input_size: Sequence[int] = (3, 32, 32),
    layer_form: str = "auto",
) -> PreparedModel:
    """The inference module for ``optimize`` (see ``OPTIMIZATIONS``) of ``model`` (eval
    mode; not modified). ``layer_form``: "auto" (under "onnxruntime": each layer's form
    timed in onnxruntime, ``dwstft.deploy.choose_layer_forms``; under "portable":
    "dense"), or one of ``dwstft.deploy.LAYER_FORMS`` for every layer."""
    check_export_options("onnx", optimize, layer_form)
    model.eval()
    if optimize == "none":
        return PreparedModel(model, None, ())
    if optimize == "fold":
        return PreparedModel(fold_model(model), None, ())
    timings: tuple[FormTiming, ...] = ()
    if layer_form == "auto" and optimize == "onnxruntime":
        require_onnx()
        timings = tuple(choose_layer_forms(model, tuple(input_size)))
        forms = {t.site: t.chosen for t in timings}
    else:
        form = "dense" if layer_form == "auto" else layer_form
        forms = {site: form for site in _stft_layer_names(model)}
    module, rewrites = deployment_model(model, forms)
    return PreparedModel(module, rewrites, timings)


def _stft_layer_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, FOLDABLE)]


def export_model(
    model: nn.Module,
    path: str | Path,
    fmt: str,
    *,
    optimize: str | None = None,
    layer_form: str = "auto",
    input_size: Sequence[int] = (3, 32, 32),
    opset: int | None = None,
    quantize: str | None = None,
    calibration: DatasetArrays | None = None,
) -> ExportReport:
    """Export ``model`` (put in eval mode) to ``path`` as ``fmt`` ("onnx" or
    "torchscript") after ``optimize`` (``OPTIMIZATIONS``; default
    :func:`default_optimization`), then verify the file against ``model`` itself
    (:func:`verify_export`). ``input_size`` is (C, H, W) of one image, or (C, T, H, W) of
    one clip; ``layer_form``: see :func:`prepare_model`.

    ``quantize="int8"`` (ONNX only): the float graph is written to a temporary folder and
    verified, then statically quantized into ``path`` (``dwstft.quantize.quantize_int8``)
    with ``calibration``'s training images, and both are scored on its test split.
    """
    optimize = check_export_options(fmt, optimize, layer_form, quantize, opset)
    if len(input_size) not in (3, 4) or any(int(s) < 1 for s in input_size):
        raise ValueError(
            f"--input-size must be positive ints C H W (images) or C T H W (clips), got "
            f"{input_size}"
        )
    if quantize is not None:
        _check_calibration(calibration, input_size)
    path = prepare_output_file(path, "--output")
    model.eval()
    check_runs_at(model, input_size)
    prepared = prepare_model(model, optimize, input_size, layer_form)
    fused, quantized = 0, None
    # Everything is written into a hidden folder beside the output and moved into place only
    # once verified, so a failed export leaves nothing behind.
    with tempfile.TemporaryDirectory(prefix=".dwstft-export-", dir=path.parent) as folder:
        staged = Path(folder) / path.name
        if fmt == "onnx" and quantize is not None:
            float_path = Path(folder) / "float.onnx"
            dynamic = export_onnx(prepared.module, float_path, input_size, opset).dynamic_batch
            verification = verify_export(float_path, fmt, model, input_size)
            _require_match(verification, path)
            quantized = _quantize(float_path, staged, calibration)
            method = f"torch.onnx.export(dynamo=True) + onnxruntime quantize_static ({quantize})"
        elif fmt == "onnx":
            dynamic, fused = export_onnx(
                prepared.module,
                staged,
                input_size,
                opset,
                fuse_for_onnxruntime=optimize == "onnxruntime",
            )
            verification = verify_export(staged, fmt, model, input_size)
            method = "torch.onnx.export(dynamo=True)"
        else:
            method = f"torch.jit.{export_torchscript(prepared.module, staged, input_size)}"
            dynamic = True
            verification = verify_export(staged, fmt, model, input_size)
        _require_match(verification, path)
        size = staged.stat().st_size
        os.replace(staged, path)
    return ExportReport(
        path=path,
        fmt=fmt,
        method=method,
        dynamic_batch=dynamic,
        size_bytes=size,
        params=count_params(model),
        exported_params=count_params(prepared.module),
        optimize=optimize,
        verification=verification,
        rewrites=prepared.rewrites,
        layer_forms=prepared.layer_forms,
        fused_convs=fused,
        quantized=quantized,
    )


class ExportMismatchError(DwstftError, RuntimeError):
    """The exported file does not compute what the PyTorch model computes; nothing was
    written (the CLI exits with status 1)."""

    exit_status = 1


def _require_match(verification: Verification, path: Path) -> None:
    if not verification.passed:
        raise ExportMismatchError(
            f"the exported model differs from PyTorch by up to {verification.max_abs_diff:.2e} "
            f"(limit {verification.limit:.1e} at logit scale {verification.scale:.3g}), so "
            f"{str(path)!r} was not written; please report this with the checkpoint"
        )


def check_runs_at(model: nn.Module, input_size: Sequence[int]) -> None:
    """Raise ValueError, before anything is exported, unless ``model`` (eval mode) runs on a
    batch of one (C, H, W) = ``input_size`` image."""
    try:
        with torch.no_grad():
            model(_example_input(1, input_size))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"the model cannot run on --input-size {' '.join(map(str, input_size))} "
            f"({first}); pass the image size it was built for (e.g. 3 32 32)"
        ) from None


def check_export_options(
    fmt: str,
    optimize: str | None = None,
    layer_form: str = "auto",
    quantize: str | None = None,
    opset: int | None = None,
) -> str:
    """Raise ValueError (naming the options) unless the options fit together; returns
    ``optimize`` resolved to the format's default (:func:`default_optimization`)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")
    if opset is not None and fmt != "onnx":
        raise ValueError(f"--opset applies to --format onnx only, got --format {fmt!r}")
    optimize = optimize or default_optimization(fmt, quantize)
    if optimize not in OPTIMIZATIONS:
        raise ValueError(f"--optimize must be one of {OPTIMIZATIONS}, got {optimize!r}")
    if optimize == "onnxruntime" and fmt != "onnx":
        raise ValueError(
            f"--optimize onnxruntime applies to --format onnx only, got --format {fmt!r}; "
            "use --optimize portable for a deployment graph in TorchScript"
        )
    if layer_form not in FORM_CHOICES:
        raise ValueError(f"--layer-form must be one of {FORM_CHOICES}, got {layer_form!r}")
    if layer_form != "auto" and optimize not in ("onnxruntime", "portable"):
        raise ValueError(
            "--layer-form applies to --optimize onnxruntime or portable, "
            f"got --optimize {optimize!r}"
        )
    if quantize is not None:
        if quantize not in QUANTIZATIONS:
            raise ValueError(f"--quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
        if fmt != "onnx":
            raise ValueError(f"--quantize applies to --format onnx only, got --format {fmt!r}")
        if optimize == "onnxruntime":
            raise ValueError(
                "--quantize needs a graph of standard operators: use --optimize portable "
                "(the default with --quantize), fold or none, not onnxruntime"
            )
    return optimize


def _check_calibration(calibration: DatasetArrays | None, input_size: Sequence[int]) -> None:
    if calibration is None:
        raise ValueError("--quantize needs calibration images: pass --calibration DATASET")
    image = tuple(calibration.train_images.shape[1:])
    if tuple(int(s) for s in input_size) != image:
        raise ValueError(
            f"--input-size {tuple(input_size)} differs from the {calibration.name} images' "
            f"{image}; export at the calibration images' size"
        )


def _quantize(float_path: Path, path: Path, calibration: DatasetArrays) -> QuantizedAccuracy:
    """Quantize ``float_path`` into ``path``; float and int8 accuracy on the test split."""
    from dwstft.bench.runtime import create_session
    from dwstft.quantize import compare_accuracy, quantize_int8

    quantize_int8(float_path, path, calibration.train_images)
    return compare_accuracy(create_session(float_path), create_session(path), calibration)


def onnx_opset(path: str | Path) -> int | None:
    """The default-domain opset an ONNX file was written with (None if it names none)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
