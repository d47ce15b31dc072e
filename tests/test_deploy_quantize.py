"""int8 static quantization (dwstft.deploy.quantize) and ``dwstft export --quantize int8``."""

import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from safetensors.torch import save_file
from torch import nn

from dwstft.cli import main
from dwstft.data import load_digits_splits
from dwstft.deploy.export import export_onnx
from dwstft.deploy.quantize import compare_accuracy, dataset_arrays, quantize_int8
from dwstft.deploy.runtime import create_session
from dwstft.models import registry
from dwstft.models.stftnet import stftnet

TINY = "_test_tiny_quantized_stftnet"


def tiny(num_classes: int = 10, in_chans: int = 1, **kwargs: object) -> nn.Module:
    return stftnet(4, 16, num_classes, in_chans, stage_blocks=(2, 1), **kwargs)


def trained_like(model: nn.Module, images: np.ndarray) -> nn.Module:
    """BatchNorm statistics of ``images`` (as training would leave them); eval mode."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(images))
    return model.eval()


@pytest.fixture(scope="module")
def digits():
    return dataset_arrays("digits", calibration_images=256)


def test_dataset_arrays_normalise_like_training(digits):
    (train, _), (test, test_labels) = load_digits_splits()
    scaled = train.double().numpy() / 255  # the whole training split sets mean and std
    mean, std = scaled.mean(), scaled.std()
    assert digits.train_images.shape == (256, 1, 8, 8) and digits.train_images.dtype == np.float32
    expected_test = (test.double().numpy() / 255 - mean) / std
    assert np.abs(digits.test_images - expected_test).max() < 1e-5
    assert np.array_equal(digits.test_labels, test_labels.numpy())
    # The calibration images are a subset of the normalised training split.
    normalised_train = ((scaled - mean) / std).reshape(len(train), -1)
    first = digits.train_images[0].reshape(-1)
    assert np.abs(normalised_train - first).max(axis=1).min() < 1e-5


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory, digits):
    """The tiny network's float and int8 ONNX files and its float logits on 64 test images."""
    folder = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    model = trained_like(tiny(), digits.train_images)
    float_path, int8_path = folder / "float.onnx", folder / "int8.onnx"
    export_onnx(model, float_path, (1, 8, 8))
    quantize_int8(float_path, int8_path, digits.train_images)
    return float_path, int8_path


def test_int8_model_stays_close_to_the_float_model(int8_model, digits):
    float_path, int8_path = int8_model
    ops = [n.op_type for n in onnx.load(str(int8_path)).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert oct(int8_path.stat().st_mode & 0o777) == oct(float_path.stat().st_mode & 0o777)
    x = digits.test_images[:64]
    name = "input"
    expected = create_session(float_path).run(None, {name: x})[0]
    got = create_session(int8_path).run(None, {name: x})[0]
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() < 0.1 * scale  # 8-bit steps, not a broken graph
    assert (got.argmax(1) == expected.argmax(1)).mean() > 0.9


def test_int8_weights_leave_headroom_against_int16_saturation(int8_model):
    """Without VNNI, x86 kernels add two uint8 x int8 products in a saturating int16: the
    weights must stay within [-64, 64] (2 * 255 * 64 < 32767) on every CPU."""
    _, int8_path = int8_model
    weights = [
        numpy_helper.to_array(t)
        for t in onnx.load(str(int8_path)).graph.initializer
        if t.data_type == onnx.TensorProto.INT8
    ]
    assert len(weights) >= 10  # every convolution and the classifier
    assert min(int(w.min()) for w in weights) >= -64
    assert max(int(w.max()) for w in weights) <= 64
    assert max(int(np.abs(w).max()) for w in weights) >= 60  # the range is used


AVX2_ONLY_CPU = "Haswell"  # qemu's model of an x86 CPU with AVX2, no AVX-512, no VNNI
_RUN_INT8 = """
import sys, numpy as np, onnxruntime as ort
options = ort.SessionOptions(); options.intra_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
np.save(sys.argv[3], session.run(None, {"input": np.load(sys.argv[2])})[0])
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="needs qemu-x86_64 (qemu-user)")
def test_int8_model_computes_the_same_on_an_avx2_only_cpu(tmp_path, int8_model, digits):
    """onnxruntime picks its integer kernels by the CPU's instruction set; the int8 file must
    compute the same on an AVX2-only CPU (emulated by qemu-user) as on this one."""
    float_path, int8_path = int8_model
    images = tmp_path / "images.npy"
    np.save(images, digits.test_images[:64])
    outputs = {}
    for name, prefix in (("native", []), ("avx2", ["qemu-x86_64", "-cpu", AVX2_ONLY_CPU])):
        out = tmp_path / f"{name}.npy"
        argv = [*prefix, sys.executable, "-c", _RUN_INT8, str(int8_path), str(images), str(out)]
        subprocess.run(argv, check=True, capture_output=True, timeout=600)
        outputs[name] = np.load(out)
    expected = create_session(float_path).run(None, {"input": digits.test_images[:64]})[0]
    scale = np.abs(expected).max()
    assert np.abs(outputs["avx2"] - expected).max() < 0.1 * scale
    assert np.abs(outputs["avx2"] - outputs["native"]).max() <= 1e-5 * scale


class StubSession:
    """An onnxruntime-like session returning fixed logits, one row per image."""

    def __init__(self, predictions: list[int]) -> None:
        self.logits = np.eye(3, dtype=np.float32)[predictions]

    def get_inputs(self):
        class Input:
            name = "input"

        return [Input()]

    def run(self, _, feed):
        x = feed["input"]
        start = int(x[0, 0, 0, 0])
        return [self.logits[start : start + len(x)]]


def test_compare_accuracy_counts_by_hand(digits):
    from dwstft.deploy.quantize import DatasetArrays

    images = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1)
    data = DatasetArrays("toy", images, images, np.array([0, 1, 2, 2]))
    result = compare_accuracy(StubSession([0, 1, 2, 0]), StubSession([0, 2, 2, 0]), data)
    assert (result.float_acc, result.int8_acc, result.agreement) == (0.75, 0.5, 0.75)
    assert result.drop_points == pytest.approx(25.0) and result.count == 4


def test_cli_exports_int8_with_the_checkpoint_dataset(tmp_path, monkeypatch, capsys, digits):
    monkeypatch.setitem(registry._MODELS, TINY, tiny)
    torch.manual_seed(0)
    model = trained_like(tiny(), digits.train_images)
    ckpt = tmp_path / "best.safetensors"
    save_file(model.state_dict(), ckpt, metadata={"model": TINY, "dataset": "digits"})
    argv = ["export", "--checkpoint", str(ckpt), "--format", "onnx", "--quantize", "int8"]
    assert main([*argv, "--calibration-images", "128"]) == 0
    out = capsys.readouterr().out
    written = tmp_path / "best.deploy.int8.onnx"
    assert written.is_file() and f"wrote {written}" in out
    assert "input (1, 8, 8)" in out and "(--optimize portable)" in out
    assert "int8 accuracy on the digits test split (360 images): float " in out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ckpt.name, written.name])
