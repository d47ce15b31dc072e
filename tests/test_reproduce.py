"""`reproduce table2` on digits with tiny models: report, skip finished runs, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from dwstft.cli import main
from dwstft.models import list_models, register_model
from dwstft.models.base import ImageClassifier
from dwstft.reproduce import run_state, run_table2
from dwstft.train import TrainingInterrupted

NAMES = ("repro_tiny_a", "repro_tiny_b")


class Tiny(ImageClassifier):
    """conv → BN → ReLU → GAP → linear; ``interrupt_after`` raises Ctrl-C at a forward."""

    interrupt_after: int | None = None
    calls = 0

    def __init__(self, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__(8, num_classes)
        self.features = nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.BatchNorm2d(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and Tiny.interrupt_after is not None:
            Tiny.calls += 1
            if Tiny.calls > Tiny.interrupt_after:
                raise KeyboardInterrupt
        return super().forward(x)


for _name in NAMES:
    if _name not in list_models():
        register_model(Tiny, name=_name)


def sweep(out: Path) -> Path:
    return run_table2(out, datasets=("digits",), models=NAMES, epochs=2, device="cpu")


def test_sweep_writes_the_report_and_skips_finished_runs(tmp_path):
    report = sweep(tmp_path)
    text = report.read_text()
    assert "| repro_tiny_a |" in text and "| repro_tiny_b |" in text
    assert "digits ours" in text and "Recipe `paper`, 2 epochs" in text
    assert "[" not in text.split("| network |")[1]  # no run is marked incomplete
    for name in NAMES:
        assert run_state(tmp_path / "digits" / name, 2) == "done"
    stamp = (tmp_path / "digits" / NAMES[0] / "last.pt").stat().st_mtime_ns
    sweep(tmp_path)
    assert (tmp_path / "digits" / NAMES[0] / "last.pt").stat().st_mtime_ns == stamp


def test_interrupted_sweep_resumes_where_it_stopped(tmp_path, monkeypatch):
    steps = 1437 // 64 + 1437 // 128  # one 2-epoch run: batch 64, then 128 (paper recipe)
    monkeypatch.setattr(Tiny, "calls", 0)
    monkeypatch.setattr(Tiny, "interrupt_after", steps + 1437 // 64 + 3)
    with pytest.raises(TrainingInterrupted):
        sweep(tmp_path)  # run a finishes (2 epochs); run b stops in its 2nd epoch
    assert run_state(tmp_path / "digits" / NAMES[0], 2) == "done"
    assert run_state(tmp_path / "digits" / NAMES[1], 2) == "partial"
    partial = (tmp_path / "reproduction.md").read_text()
    assert "[1/2 ep]" in partial
    monkeypatch.setattr(Tiny, "interrupt_after", None)
    sweep(tmp_path)
    assert run_state(tmp_path / "digits" / NAMES[1], 2) == "done"


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="datasets"):
        run_table2(tmp_path, datasets=("imagenet",))
    with pytest.raises(ValueError, match="unknown model"):
        run_table2(tmp_path, datasets=("digits",), models=("resnet50",))
    with pytest.raises(SystemExit):
        main(["reproduce", "table2", "--dataset", "mnist"])
