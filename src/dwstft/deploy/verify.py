"""Checking an exported file against PyTorch: run it (onnxruntime for ONNX,
``torch.jit.load`` for TorchScript) and the unmodified model on the same seeded inputs,
and refuse the file unless they agree within ``TOLERANCE`` of the logit scale.

Also what the writers in :mod:`dwstft.deploy.export` share with the check: the seeded
example inputs, the exporters' silenced chatter, and the optional ONNX packages.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dwstft.errors import DwstftError, MissingDependencyError

FORMATS = ("onnx", "torchscript")
#: Largest accepted max |exported - PyTorch| per unit of output scale (max(1, max |logit|)).
TOLERANCE = 1e-4
_ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


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
def quiet_exporters() -> Iterator[None]:
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


def example_input(batch: int, input_size: Sequence[int]) -> torch.Tensor:
    """A seeded standard-normal batch (batch, C, H, W) (the scale of normalised images)."""
    generator = torch.Generator().manual_seed(batch)
    return torch.randn(batch, *input_size, generator=generator)


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
    with quiet_exporters():
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
        x = example_input(batch, input_size)
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


class ExportMismatchError(DwstftError, RuntimeError):
    """The exported file does not compute what the PyTorch model computes; nothing was
    written (the CLI exits with status 1)."""

    exit_status = 1


def require_match(verification: Verification, path: Path) -> None:
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
            model(example_input(1, input_size))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"the model cannot run on --input-size {' '.join(map(str, input_size))} "
            f"({first}); pass the image size it was built for (e.g. 3 32 32)"
        ) from None
