"""Atomic writes, the resumable checkpoint and the safetensors weights."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from torch import nn

from dwstft.train import (
    atomic_write,
    atomic_write_text,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)


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
    weights, info = load_weights(tmp_path / "best.safetensors")
    assert info == {"model": "m", "epoch": "4"}
    assert weights.keys() == model.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
