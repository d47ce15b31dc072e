"""Inference export: turn a trained model into an inference graph (``OPTIMIZATIONS``: the
deployment graph of :mod:`dwstft.deploy.rewrites`, tuned for onnxruntime or portable, the
folded Depthwise-STFT layers, or the model as it is), write ONNX
(``torch.onnx.export(..., dynamo=True)``) or TorchScript, and check the written file
against the unmodified PyTorch model on the same random input
(:mod:`dwstft.deploy.verify`).

ONNX export and its check need the optional ``onnx``, ``onnxscript`` and ``onnxruntime``
packages (``pip install 'dwstft[export]'``); they are imported only when used.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from dwstft._atomic import atomic_write_bytes, prepare_output_file
from dwstft.deploy.forms import FORM_CHOICES, FormTiming, choose_layer_forms
from dwstft.deploy.ort_fusion import fuse_conv_add_activation
from dwstft.deploy.rewrites import Rewrites, deployment_model
from dwstft.deploy.runtime import create_session
from dwstft.deploy.verify import (
    FORMATS,
    Verification,
    check_runs_at,
    example_input,
    quiet_exporters,
    require_match,
    require_onnx,
    verify_export,
)
from dwstft.models.complexity import count_params
from dwstft.nn.model_ops import FOLDABLE, fold_model

if TYPE_CHECKING:  # dwstft.deploy.quantize loads the datasets' dependencies: imported when used
    from dwstft.deploy.quantize import DatasetArrays, QuantizedAccuracy

#: Quantized exports (:mod:`dwstft.deploy.quantize`).
QUANTIZATIONS = ("int8",)
#: What is exported: "onnxruntime", the deployment graph (:mod:`dwstft.deploy.rewrites`)
#: with layer forms timed in onnxruntime and Conv+Add+activation fused into onnxruntime's
#: FusedConv (ONNX only; the file needs onnxruntime); "portable", the deployment graph in
#: standard operators; "fold", only the Depthwise-STFT layers folded (``fold_model``);
#: "none", the model as it is.
OPTIMIZATIONS = ("onnxruntime", "portable", "fold", "none")


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
    activation into onnxruntime's FusedConv (:mod:`dwstft.deploy.ort_fusion`).
    """
    require_onnx()
    example = (example_input(2, input_size),)
    options: dict[str, Any] = {
        "dynamo": True,
        "input_names": ["input"],
        "output_names": ["logits"],
        "verbose": False,
    }
    if opset is not None:
        options["opset_version"] = opset
    dynamic = {0: torch.export.Dim("batch", min=1)}
    with quiet_exporters(), torch.no_grad():
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
    with quiet_exporters():
        try:
            compiled = torch.jit.script(model)
            method = "script"
        except Exception as err:  # torch.jit raises frontend, runtime and type errors
            reason = _short_reason(err)
            with torch.no_grad():
                compiled = torch.jit.trace(model, example_input(2, input_size), check_trace=False)
            method = f"trace (script failed: {reason})"
        buffer = io.BytesIO()
        torch.jit.save(compiled, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return method


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
    timed in onnxruntime, ``dwstft.deploy.forms.choose_layer_forms``; under "portable":
    "dense"), or one of ``dwstft.deploy.forms.LAYER_FORMS`` for every layer."""
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
    verified, then statically quantized into ``path`` (``dwstft.deploy.quantize.quantize_int8``)
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
            require_match(verification, path)
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
        require_match(verification, path)
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
    from dwstft.deploy.quantize import compare_accuracy, quantize_int8

    quantize_int8(float_path, path, calibration.train_images)
    return compare_accuracy(create_session(float_path), create_session(path), calibration)


def onnx_opset(path: str | Path) -> int | None:
    """The default-domain opset an ONNX file was written with (None if it names none)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
