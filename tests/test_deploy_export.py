import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from dwstft import create_model
from dwstft.cli import main
from dwstft.deploy.export import export_model
from dwstft.deploy.verify import require_onnx
from dwstft.models import registry
from dwstft.models.complexity import count_params
from dwstft.models.stftnet import stftnet
from dwstft.nn.model_ops import FOLDABLE, fold_model
from dwstft.nn.multiscale import ReLPU
from tiny_stftnet import calibrated, tiny

TINY = "_test_tiny_stftnet"


@pytest.fixture
def tiny_registered(monkeypatch):
    """``TINY`` in the model registry for this test only."""
    monkeypatch.setitem(registry._MODELS, TINY, tiny)
    return TINY


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1.0)).item()


def folded_params(model: nn.Module) -> int:
    """Parameters after folding, by hand: every foldable layer becomes an
    (F, C, n_max, n_max) kernel plus F biases."""
    total = count_params(model)
    for m in model.modules():
        if isinstance(m, FOLDABLE):
            n = getattr(m, "max_kernel_size", None) or m.kernel_size
            bias = m.out_channels if m.pointwise.bias is not None else 0
            total += m.out_channels * m.in_channels * n * n + bias - count_params(m)
    return total


@pytest.fixture(scope="module")
def b8():
    """stftnet_b8_f128 with calibrated BatchNorm statistics, shared by the tests below
    (which must not modify it)."""
    return calibrated(create_model("stftnet_b8_f128"))


def assert_fold_equivalent(model: nn.Module) -> None:
    folded = fold_model(model)
    assert not any(isinstance(m, FOLDABLE) for m in folded.modules())
    assert any(isinstance(m, FOLDABLE) for m in model.modules())  # the original is intact
    assert count_params(folded) == folded_params(model)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert max_rel_diff(folded(x), model(x)) < 1e-5


def test_fold_model_is_equivalent_and_plain_conv():
    assert_fold_equivalent(calibrated(tiny()))


def test_fold_model_of_stftnet_b8_f128(b8):
    assert_fold_equivalent(b8)


def test_fold_model_keeps_relpu_and_training_mode():
    model = calibrated(tiny(mixer="relpu")).train()
    folded = fold_model(model)
    assert sum(isinstance(m, ReLPU) for m in folded.modules()) == 2
    assert not any(isinstance(m, FOLDABLE) for m in folded.modules())  # the stem folds
    assert all(m.training for m in folded.modules())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_rel_diff(folded.eval()(x), model.eval()(x)) < 1e-5


def test_fold_model_of_a_bare_layer():
    from dwstft.nn.layers import DepthwiseSTFTSeparable

    layer = DepthwiseSTFTSeparable(3, 5, 5).eval()
    conv = fold_model(layer)
    assert isinstance(conv, nn.Conv2d) and conv.weight.shape == (5, 3, 5, 5)


def test_onnx_export_of_folded_stftnet_b8_f128_matches_pytorch(tmp_path, b8):
    report = export_model(b8, tmp_path / "b8.onnx", "onnx", optimize="fold")
    check = report.verification
    print(f"stftnet_b8_f128 folded ONNX max |diff| {check.max_abs_diff:.3e}")
    assert check.passed and check.max_abs_diff < 1e-4
    assert report.dynamic_batch and check.batches == (2, 1)
    assert report.folded and report.exported_params > report.params
    assert report.size_bytes == (tmp_path / "b8.onnx").stat().st_size > 4 * report.params


def onnx_ops(path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_deployment_export_of_stftnet_b8_f128_for_onnxruntime(tmp_path, b8):
    path = tmp_path / "b8.ort.onnx"
    report = export_model(b8, path, "onnx", layer_form="dense")
    check = report.verification
    print(f"stftnet_b8_f128 onnxruntime deployment ONNX max |diff| {check.max_abs_diff:.3e}")
    assert report.optimize == "onnxruntime" and check.passed and check.batches == (2, 1)
    # 12 Block 2: each one FusedConv (conv + skip + LeakyRelu); no BatchNorm, Add or Mul.
    assert report.fused_convs == 12 and report.rewrites.skip_scales_absorbed == 12
    ops = onnx_ops(path)
    assert ops.count("FusedConv") == 12
    assert not {"BatchNormalization", "Add", "Mul"} & set(ops)
    # Block 1 and the stem keep Conv → LeakyRelu, which onnxruntime fuses itself.
    assert ops.count("Conv") == 33 - 12 and ops.count("LeakyRelu") == 17 - 12


def test_portable_deployment_export_uses_standard_operators(tmp_path, b8):
    path = tmp_path / "b8.deploy.onnx"
    report = export_model(b8, path, "onnx", optimize="portable")
    assert report.verification.passed and report.fused_convs == 0 and not report.layer_forms
    ops = onnx_ops(path)
    assert "FusedConv" not in ops and "BatchNormalization" not in ops
    assert ops.count("Add") == 12 and ops.count("Conv") == 33


def test_bank_layer_form_export_matches_pytorch(tmp_path):
    model = calibrated(tiny())
    report = export_model(model, tmp_path / "t.onnx", "onnx", layer_form="bank")
    assert report.verification.passed
    # Each of the 2 blocks and the stem: a grouped bank conv and a 1×1 instead of one conv.
    assert onnx_ops(tmp_path / "t.onnx").count("Conv") == 2 * 3 + 2


def test_layer_forms_are_timed_when_not_given(tmp_path):
    model = calibrated(tiny())
    report = export_model(model, tmp_path / "t.onnx", "onnx", input_size=(3, 8, 8))
    assert report.verification.passed
    sites = [t.site for t in report.layer_forms]
    assert sites == ["features.0.0", "features.1.mix", "features.3.mix"]


def test_onnx_export_unfolded_runs_in_onnxruntime(tmp_path):
    import onnxruntime

    model = calibrated(tiny())
    path = tmp_path / "tiny.onnx"
    report = export_model(model, path, "onnx", opset=18, optimize="none")
    assert report.verification.passed and not report.folded
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 3, 32, 32)
    (logits,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        assert max_rel_diff(torch.from_numpy(logits), model(x)) < 1e-4


@pytest.mark.parametrize("optimize", ["none", "fold", "portable"])
def test_torchscript_round_trip(tmp_path, optimize):
    model = calibrated(tiny())
    path = tmp_path / "tiny.torchscript.pt"
    report = export_model(model, path, "torchscript", optimize=optimize)
    assert report.verification.passed and report.method.startswith("torch.jit.")
    loaded = torch.jit.load(str(path))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert max_rel_diff(loaded(x), model(x)) < 1e-4


def test_torchscript_scripts_plain_modules(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 3, 8, 8))
    report = export_model(model, tmp_path / "m.pt", "torchscript", input_size=(3, 8, 8))
    assert report.method == "torch.jit.script" and report.verification.passed


def test_cli_exports_a_safetensors_checkpoint(tmp_path, tiny_registered, capsys):
    ckpt = tmp_path / "best.safetensors"
    save_file(calibrated(tiny()).state_dict(), ckpt)
    argv = ["export", "--checkpoint", str(ckpt), "--model", TINY, "--format", "onnx", "--fold"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    onnx_path = tmp_path / "best.folded.onnx"
    assert onnx_path.is_file() and str(onnx_path) in out
    assert "dynamic batch" in out and "(--optimize fold)" in out and ": OK" in out
    assert f"{onnx_path.stat().st_size:,} bytes" in out


def test_cli_exports_torchscript_from_training_checkpoint(tmp_path, tiny_registered, capsys):
    ckpt = tmp_path / "last.pt"
    torch.save({"model": calibrated(tiny()).state_dict(), "config": {"model": TINY}}, ckpt)
    out_path = tmp_path / "model.ts"
    argv = ["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--output"]
    assert main([*argv, str(out_path)]) == 0
    out = capsys.readouterr().out
    assert out_path.is_file() and "torch.jit." in out and "(--optimize none)" in out


def test_cli_rejects_checkpoint_of_another_model(tmp_path, tiny_registered, capsys, monkeypatch):
    wider = "_test_tiny_stftnet_b6"
    monkeypatch.setitem(
        registry._MODELS, wider, lambda **kw: stftnet(6, 8, stage_blocks=(1, 1), **kw)
    )
    ckpt = tmp_path / "best.safetensors"
    save_file(tiny().state_dict(), ckpt)
    for name, problem in ((wider, "shape mismatches"), ("mobilenet", "missing keys")):
        argv = ["export", "--checkpoint", str(ckpt), "--model", name, "--format", "onnx"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"does not fit --model {name!r}" in err and problem in err
        assert f"Expected weights saved from {name!r}" in err
    assert not list(tmp_path.glob("*.onnx"))


def test_cli_needs_a_model_name_and_matching_input(tmp_path, tiny_registered, capsys):
    ckpt = tmp_path / "weights.pt"
    torch.save(tiny().state_dict(), ckpt)
    assert main(["export", "--checkpoint", str(ckpt), "--format", "onnx"]) == 2
    assert "--model is required" in capsys.readouterr().err
    argv = ["export", "--checkpoint", str(ckpt), "--model", TINY, "--format", "torchscript"]
    assert main([*argv, "--input-size", "1", "32", "32"]) == 2
    assert "--input-size C must equal the model's in_chans=3, got 1" in capsys.readouterr().err


def test_cli_export_of_a_folder_says_it_is_a_folder(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert main(["export", "--checkpoint", str(run), "--format", "onnx"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"checkpoint {str(run)!r} is a folder" in line and "best.safetensors" in line
    assert list(tmp_path.iterdir()) == [run] and not list(run.iterdir())


def test_missing_onnx_packages_are_named(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else real(name)
    )
    with pytest.raises(ImportError, match=r"missing: onnxruntime.*dwstft\[export\]"):
        require_onnx()


def test_cli_reads_the_training_loop_checkpoint(tmp_path, tiny_registered, capsys):
    from dwstft.train.checkpoint import save_checkpoint

    model = calibrated(tiny(num_classes=100))
    state = {
        "epoch": 3,
        "model": model.state_dict(),
        "optimizer": torch.optim.Adam(model.parameters()).state_dict(),
        "scaler": {},
        "best": {"test_acc": 0.5, "epoch": 2},
        "history": [],
        "config": {"model": TINY, "dataset": "cifar100"},
    }
    save_checkpoint(tmp_path / "last.pt", state)
    assert main(["export", "--checkpoint", str(tmp_path / "last.pt"), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert f"{TINY}: wrote {tmp_path / 'last.ort.onnx'}" in out
    assert "(--optimize onnxruntime)" in out and "1 sum+BN folded" not in out
    assert "conv+BN folded" in out and "layer(s) at (4, 32, 32)" in out


def test_cli_fails_when_the_export_does_not_match(tmp_path, tiny_registered, capsys, monkeypatch):
    monkeypatch.setattr("dwstft.deploy.verify.TOLERANCE", 0.0)
    ckpt = tmp_path / "best.safetensors"
    save_file(calibrated(tiny()).state_dict(), ckpt)
    argv = ["export", "--checkpoint", str(ckpt), "--model", TINY, "--format", "onnx", "--fold"]
    argv += ["--output", str(tmp_path / "out.onnx")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differs from PyTorch" in err[0] and "was not written" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors"]


def test_cli_exports_at_the_size_of_the_recorded_dataset(tmp_path, tiny_registered, capsys):
    # issue 23.4: a digits checkpoint was exported for 32x32 inputs
    model = calibrated(tiny(in_chans=1), in_chans=1)
    save_file(
        model.state_dict(), tmp_path / "best.safetensors", {"model": TINY, "dataset": "digits"}
    )
    torch.save({"model": model.state_dict(), "config": {"model": TINY, "dataset": "digits"}},
               tmp_path / "last.pt")  # fmt: skip
    for name in ("best.safetensors", "last.pt"):
        argv = ["export", "--checkpoint", str(tmp_path / name), "--format", "torchscript"]
        assert main(argv) == 0
        assert "input (1, 8, 8)" in capsys.readouterr().out
    argv = ["export", "--checkpoint", str(tmp_path / "last.pt"), "--format", "torchscript"]
    argv += ["--output", str(tmp_path / "x.pt"), "--input-size", "1", "16", "16"]  # overrides
    assert main(argv) == 0
    assert "input (1, 16, 16)" in capsys.readouterr().out


def test_cli_refuses_a_recorded_dataset_it_does_not_know(tmp_path, tiny_registered, capsys):
    ckpt = tmp_path / "best.safetensors"
    save_file(tiny().state_dict(), ckpt, {"model": TINY, "dataset": "mnist"})
    assert main(["export", "--checkpoint", str(ckpt), "--format", "torchscript"]) == 2
    err = capsys.readouterr().err
    assert "records dataset 'mnist', which is not one of" in err and "--input-size" in err
    assert list(tmp_path.iterdir()) == [ckpt]


def test_a_moving_digits_checkpoint_exports_for_its_clips(tmp_path, capsys):
    import onnxruntime

    from dwstft.data import load_dataset, normalize

    torch.manual_seed(0)
    model = create_model("video_stft_tiny", num_classes=40, in_chans=1).eval()
    ckpt = tmp_path / "best.safetensors"
    save_file(model.state_dict(), ckpt, {"model": "video_stft_tiny", "dataset": "moving-digits"})
    argv = ["export", "--checkpoint", str(ckpt), "--format", "onnx", "--optimize", "none"]
    assert main(argv) == 0
    assert "input (1, 8, 32, 32)" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(tmp_path / "best.onnx"))
    clips = load_dataset("moving-digits")
    x = normalize(clips.test_images[:16], clips.mean, clips.std)
    got = torch.as_tensor(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        torch.testing.assert_close(got, model(x), rtol=1e-4, atol=1e-4)


def run_cli(*argv: str):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "dwstft.cli", *argv], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fold", "--optimize", "portable"], "--fold contradicts --optimize portable"),
        (["--optimize", "fold", "--layer-form", "bank"], "--layer-form applies to --optimize"),
        (["--calibration", "digits"], "--calibration applies to --quantize only"),
    ],
)
def test_cli_rejects_contradicting_export_options(tmp_path, extra, message):
    ckpt = tmp_path / "best.safetensors"
    save_file(create_model("mobilenet", num_classes=3).state_dict(), ckpt)
    result = run_cli(
        "export", "--checkpoint", str(ckpt), "--model", "mobilenet", "--format", "onnx", *extra
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("dwstft export: error: ") and message in line
    assert list(tmp_path.iterdir()) == [ckpt]


def test_cli_rejects_onnxruntime_graph_for_torchscript_and_quantization(tmp_path):
    ckpt = tmp_path / "best.safetensors"
    save_file(create_model("mobilenet", num_classes=3).state_dict(), ckpt)
    base = ["export", "--checkpoint", str(ckpt), "--model", "mobilenet"]
    for extra, message in (
        (["--format", "torchscript"], "applies to --format onnx"),
        (
            ["--format", "onnx", "--quantize", "int8", "--calibration", "digits"],
            "--quantize needs a graph of standard operators",
        ),
    ):
        result = run_cli(*base, *extra, "--optimize", "onnxruntime")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert list(tmp_path.iterdir()) == [ckpt]
