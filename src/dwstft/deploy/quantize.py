"""int8 static quantization of an exported ONNX model with onnxruntime, calibrated on a
dataset's training split, and the accuracy of ONNX models on its test split.

``quantize_int8`` runs ``onnxruntime.quantization.quantize_static`` in QDQ format:
weights int8 (per output channel by default) in 7 bits (``reduce_range``, below),
activations uint8 with ranges observed (min/max) on calibration images fed exactly as
training feeds them (normalised with the training split's mean and std, native
resolution). onnxruntime then runs each QuantizeLinear → DequantizeLinear → Conv group as
an integer convolution. The float model to quantize must use standard operators (the
"portable" deployment export): the onnxruntime-only FusedConv has no quantized kernel.

Why 7-bit weights: on x86 CPUs without VNNI (AVX2, AVX-512 without VNNI) onnxruntime's
uint8 x int8 kernels multiply with ``vpmaddubsw``, which adds two u8·s8 products into a
saturating int16; with full-range weights (|w| <= 127) the sum reaches 2·255·127 = 64770
and saturates at 32767. onnxruntime's documentation names ``reduce_range`` (weights in
[-64, 64]: at most 2·255·64 = 32640) as the fix. VNNI CPUs (``vpdpbusd``, 32-bit sums)
never saturate, so the file is the same everywhere and computes the same on both: a
stftnet_b8_f128 digits model quantized with full-range weights was off by 0.28 of its
logit scale on an AVX2 CPU and 0.07 on AVX-512 VNNI; with ``reduce_range`` 0.063 on both
(docs: BENCHMARKS.md, int8). Quantizing weights as uint8 instead (u8u8, no saturation
either) loses the symmetric int8 convolution kernels.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dwstft._atomic import atomic_write_bytes
from dwstft.data import load_dataset, normalize

#: Calibration images used unless told otherwise (a seeded random subset of the split).
CALIBRATION_IMAGES = 1024
_EVAL_BATCH = 256


@dataclass(frozen=True)
class DatasetArrays:
    """A dataset's normalised float32 images (N, C, H, W) and int64 labels (N,)."""

    name: str
    train_images: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def dataset_arrays(
    name: str, data_dir: str | Path | None = None, calibration_images: int = CALIBRATION_IMAGES
) -> DatasetArrays:
    """``calibration_images`` training images (a seeded random subset when the split is
    larger; all of it otherwise) and the whole test split of dataset ``name``, normalised
    as training normalises them (``dwstft.data.normalize`` with the training split's
    per-channel mean and std)."""
    if calibration_images < 1:
        raise ValueError(f"--calibration-images must be >= 1, got {calibration_images}")
    splits = load_dataset(name, data_dir, download=False)
    train = splits.train_images
    if train.shape[0] > calibration_images:
        generator = torch.Generator().manual_seed(0)
        train = train[torch.randperm(train.shape[0], generator=generator)[:calibration_images]]
    return DatasetArrays(
        name=name,
        train_images=normalize(train, splits.mean, splits.std).numpy(),
        test_images=normalize(splits.test_images, splits.mean, splits.std).numpy(),
        test_labels=splits.test_labels.numpy(),
    )


def _batches(images: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    for start in range(0, images.shape[0], batch):
        yield np.ascontiguousarray(images[start : start + batch])


def quantize_int8(
    float_path: str | Path,
    output: str | Path,
    calibration: np.ndarray,
    per_channel: bool = True,
    batch: int = 64,
) -> None:
    """Write ``output``: the ONNX model ``float_path`` statically quantized to int8 (QDQ
    format, 7-bit int8 weights per channel if ``per_channel`` (``reduce_range``: no int16
    saturation on CPUs without VNNI, see the module docstring), uint8 activations, min/max
    calibration on ``calibration``, float32 (N, C, H, W) images fed ``batch`` at a time),
    after onnxruntime's recommended pre-processing (shape inference and graph
    optimisation, ``quant_pre_process``). Written atomically (``dwstft._atomic``)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    session_input = _input_name(float_path)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = _batches(calibration, batch)

        def get_next(self) -> dict[str, np.ndarray] | None:
            images = next(self._batches, None)
            return None if images is None else {session_input: images}

    with tempfile.TemporaryDirectory(prefix="dwstft-quantize-") as work:
        prepared, quantized = Path(work) / "prepared.onnx", Path(work) / "int8.onnx"
        quant_pre_process(str(float_path), str(prepared))
        quantize_static(
            str(prepared),
            str(quantized),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=True,
        )
        atomic_write_bytes(output, quantized.read_bytes())


def _input_name(path: str | Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def onnx_predictions(session: Any, images: np.ndarray, batch: int = _EVAL_BATCH) -> np.ndarray:
    """Predicted classes (N,) of an onnxruntime session on float32 images (N, C, H, W)."""
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: x})[0].argmax(axis=1) for x in _batches(images, batch)]
    )


@dataclass(frozen=True)
class QuantizedAccuracy:
    """Test-split accuracy (0..1) of the float and the int8 model, and the fraction of
    test images on which their predictions agree."""

    dataset: str
    count: int
    float_acc: float
    int8_acc: float
    agreement: float

    @property
    def drop_points(self) -> float:
        """Accuracy lost by quantization, in percentage points."""
        return 100.0 * (self.float_acc - self.int8_acc)


def compare_accuracy(
    float_session: Any, int8_session: Any, data: DatasetArrays
) -> QuantizedAccuracy:
    """Accuracy of both sessions on ``data``'s test split."""
    float_pred = onnx_predictions(float_session, data.test_images)
    int8_pred = onnx_predictions(int8_session, data.test_images)
    return QuantizedAccuracy(
        dataset=data.name,
        count=int(data.test_labels.shape[0]),
        float_acc=float((float_pred == data.test_labels).mean()),
        int8_acc=float((int8_pred == data.test_labels).mean()),
        agreement=float((float_pred == int8_pred).mean()),
    )
