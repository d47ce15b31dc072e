"""Shared test configuration: only what mutation testing needs (see docs/testing.md)."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _skip_compilers_under_mutmut(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``make mutate`` every mutated function is wrapped in mutmut's trampoline, which
    TorchScript cannot compile and ONNX export cannot trace: a test that reaches either is
    skipped there (and runs normally everywhere else)."""
    if "MUTANT_UNDER_TEST" not in os.environ:
        return

    def unavailable(*args: object, **kwargs: object) -> None:
        pytest.skip("TorchScript/ONNX cannot compile mutmut's trampolines")

    monkeypatch.setattr(torch.jit, "script", unavailable)
    monkeypatch.setattr(torch.onnx, "export", unavailable)
