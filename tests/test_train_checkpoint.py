"""Atomic writes, the resumable checkpoint and the safetensors weights."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from dwstft.models import registry
from dwstft.train import (
    atomic_write,
    atomic_write_text,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)
from dwstft.train.checkpoint import infer_model_args, model_from_checkpoint
from tiny_stftnet import calibrated, tiny

TINY = "_test_tiny_stftnet"


@pytest.fixture
def tiny_registered(monkeypatch):
    """``TINY`` in the model registry for this test only."""
    monkeypatch.setitem(registry._MODELS, TINY, tiny)
    return TINY


def leftovers(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new contents")
    assert path.read_text() == "new contents" and leftovers(tmp_path) == []
    mode = stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_failure_during_serialization_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write(path, lambda f: f.write(b"good"))

    def torn(f):
        f.write(b"half a fi")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, torn)
    assert path.read_bytes() == b"good" and leftovers(tmp_path) == []


def test_interrupt_during_checkpoint_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    state = {
        "epoch": 1,
        "model": {"w": torch.ones(3)},
        "optimizer": {"state": {}, "param_groups": []},
        "scaler": {},
        "best": {"test_acc": 0.5, "epoch": 1},
        "history": [{"epoch": 1, "test_acc": 0.5}],
        "config": {"model": "m"},
    }
    save_checkpoint(path, state)

    def interrupted_save(obj, f):
        f.write(b"\x80\x02partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {**state, "epoch": 2})
    monkeypatch.undo()
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 1 and torch.equal(loaded["model"]["w"], torch.ones(3))
    assert leftovers(tmp_path) == []


def test_checkpoint_holds_optimizer_state_loadable_weights_only(tmp_path):
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, eps=1e-7)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    scaler = torch.amp.GradScaler("cpu")
    state = {
        "epoch": 3,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scaler": scaler.state_dict(),
        "best": {"test_acc": 0.9, "epoch": 2},
        "history": [{"epoch": 1, "test_loss": 0.3}],
        "config": {"model": "x", "opt_betas": [0.9, 0.999], "clip_grad": None},
    }
    save_checkpoint(tmp_path / "last.pt", state)
    torch.load(tmp_path / "last.pt", weights_only=True)  # no unsafe globals needed
    loaded = load_checkpoint(tmp_path / "last.pt")
    fresh = torch.optim.Adam(nn.Linear(3, 2).parameters())
    fresh.load_state_dict(loaded["optimizer"])
    assert fresh.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert loaded["config"] == state["config"] and loaded["format"] == 1


def test_save_checkpoint_rejects_incomplete_state(tmp_path):
    with pytest.raises(ValueError, match="missing checkpoint keys"):
        save_checkpoint(tmp_path / "last.pt", {"epoch": 1})


def test_load_checkpoint_rejects_foreign_files(tmp_path):
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"not a dwstft last\.pt"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_weights_round_trip_with_metadata(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    save_weights(tmp_path / "best.safetensors", model.state_dict(), {"model": "m", "epoch": "4"})
    loaded = load_weights(tmp_path / "best.safetensors")
    weights, info = loaded.state, loaded.info
    assert info == {"model": "m", "epoch": "4"}
    assert weights.keys() == model.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_infer_model_args_reads_classes_and_channels(tiny_registered):
    for classes, chans in ((7, 1), (4, 3)):
        state = tiny(num_classes=classes, in_chans=chans).state_dict()
        assert infer_model_args(TINY, state) == (classes, chans)
    with pytest.raises(ValueError, match=r"no 2-D 'head\.weight'"):
        infer_model_args(TINY, {})


def test_checkpoint_formats_load_the_same_weights(tmp_path, tiny_registered):
    model = calibrated(tiny(num_classes=5, in_chans=1), in_chans=1)
    state = model.state_dict()
    save_file(state, tmp_path / "best.safetensors", metadata={"model": TINY})
    torch.save({"model": state, "config": {"model": TINY}}, tmp_path / "last.pt")
    torch.save(state, tmp_path / "raw.pt")
    for name, recorded in (("best.safetensors", TINY), ("last.pt", TINY), ("raw.pt", None)):
        weights = load_weights(tmp_path / name)
        assert weights.recorded("model") == recorded and weights.state.keys() == state.keys()
    rebuilt = model_from_checkpoint(tmp_path / "last.pt")
    assert (rebuilt.name, rebuilt.num_classes, rebuilt.in_chans) == (TINY, 5, 1)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt.model(x), model(x))


def test_load_weights_rejects_other_pickles(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds no state dict"):
        load_weights(tmp_path / "list.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a valid safetensors"):
        load_weights(tmp_path / "junk.safetensors")
