"""Training with ``--compile`` (the tested way to train long runs on the CPU): the compiled
step follows the eager one within float tolerance, and a compiled run interrupted and
resumed reproduces the uninterrupted compiled run."""

from __future__ import annotations

import pytest
import torch

from dwstft.models import registry
from dwstft.models.stftnet import stftnet
from dwstft.train import TrainingInterrupted, load_checkpoint, make_config, resolve_config, train
from dwstft.train import loop as train_loop

pytestmark = [pytest.mark.compile, pytest.mark.slow]

SMALL = "small_compiled_stftnet"


def small_stftnet(num_classes: int = 10, in_chans: int = 1):
    return stftnet(4, 16, num_classes, in_chans, stage_blocks=(1, 2))


@pytest.fixture(scope="module", autouse=True)
def registered():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._MODELS, SMALL, small_stftnet)
        yield


def config(output, **overrides):
    values = {"model": SMALL, "dataset": "digits", "output": str(output), "device": "cpu"}
    return make_config("fast", **{**values, "epochs": 2, **overrides})


def interrupt_in_epoch_two(monkeypatch) -> object:
    """Make the training loop raise KeyboardInterrupt as epoch 2 starts; the original
    epoch function is returned so that a test can put it back."""
    original = train_loop._train_epoch

    def stop_in_epoch_two(run):
        if run.epoch == 1:
            raise KeyboardInterrupt
        return original(run)

    monkeypatch.setattr(train_loop, "_train_epoch", stop_in_epoch_two)
    return original


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory):
    return train(config(tmp_path_factory.mktemp("compiled"), compile=True))


def test_compiled_training_follows_eager(compiled_run, tmp_path):
    eager = train(config(tmp_path, compile=False))
    for a, b in zip(compiled_run.history, eager.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-3)
    # Compare what the two trained networks compute, not every weight: Adam turns the
    # rounding noise of a gradient that is zero in exact arithmetic (a conv bias right
    # before BatchNorm) into full-size steps, so such weights differ without consequence.
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    outputs = []
    for path in (compiled_run.run_dir / "last.pt", tmp_path / "last.pt"):
        model = small_stftnet().eval()
        model.load_state_dict(load_checkpoint(path)["model"])
        with torch.no_grad():
            outputs.append(model(x))
    scale = outputs[1].abs().max()
    assert (outputs[0] - outputs[1]).abs().max() <= 1e-3 * scale


def test_an_interrupted_compiled_run_resumes_exactly(compiled_run, tmp_path, monkeypatch):
    original = interrupt_in_epoch_two(monkeypatch)
    with pytest.raises(TrainingInterrupted):
        train(config(tmp_path, compile=True))
    monkeypatch.setattr(train_loop, "_train_epoch", original)
    resumed = train(resolve_config(resume=str(tmp_path / "last.pt"), device="cpu"))
    assert [r["test_loss"] for r in resumed.history] == [
        r["test_loss"] for r in compiled_run.history
    ]
    expected = load_checkpoint(compiled_run.run_dir / "last.pt")["model"]
    got = load_checkpoint(tmp_path / "last.pt")["model"]
    assert all(torch.equal(got[k], v) for k, v in expected.items())


def test_cuda_graph_modes_are_refused_on_the_cpu(tmp_path):
    from dwstft.train import RunSetupError

    with pytest.raises(RunSetupError, match="needs a CUDA device"):
        train(config(tmp_path, compile=True, compile_mode="reduce-overhead"))
    assert not (tmp_path / "last.pt").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_training_follows_eager_and_resumes_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    graphs_config = {"device": "cuda", "compile": True, "compile_mode": "reduce-overhead"}
    eager = train(config(tmp_path / "eager", device="cuda"))
    graphs = train(config(tmp_path / "graphs", **graphs_config))
    again = train(config(tmp_path / "again", **graphs_config))
    for a, b in zip(graphs.history, eager.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
    original = interrupt_in_epoch_two(monkeypatch)
    out = tmp_path / "resumed"
    with pytest.raises(TrainingInterrupted):
        train(config(out, **graphs_config))
    monkeypatch.setattr(train_loop, "_train_epoch", original)
    resumed = train(resolve_config(resume=str(out / "last.pt"), device="cuda"))

    def losses(run):
        return torch.tensor([r["test_loss"] for r in run.history], dtype=torch.float64)

    # GPU reductions with atomics are not bit-reproducible: a resumed run must be as close
    # to the uninterrupted one as a second uninterrupted run is (exact where that one is).
    noise = (losses(again) - losses(graphs)).abs().max().item()
    gap = (losses(resumed) - losses(graphs)).abs().max().item()
    assert gap <= max(10 * noise, 1e-6), f"resume gap {gap:.3g}, run-to-run noise {noise:.3g}"
