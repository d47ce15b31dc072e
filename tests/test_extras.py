"""scikit-learn (digits) and matplotlib (pictures) are extras: the layer, the models and
training work without them, and the commands that need them say which extra to install.

Each case runs a fresh interpreter in which the extra's module cannot be imported
(``sys.modules[name] = None`` makes ``import name`` raise ImportError)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def run_without(blocked: tuple[str, ...], body: str, cwd: Path) -> subprocess.CompletedProcess:
    code = f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
    code += textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_the_layer_and_models_import_neither_extra(tmp_path):
    proc = run_without(
        ("sklearn", "matplotlib"),
        """
        import torch
        from dwstft import DepthwiseSTFTSeparable, create_model
        y = create_model("stftnet_b8_f128")(torch.randn(1, 3, 32, 32))
        print(tuple(y.shape), DepthwiseSTFTSeparable(2, 3)(torch.randn(1, 2, 5, 5)).shape[1])
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["(1,", "10)", "3"]


def test_digits_without_scikit_learn_names_the_data_extra(tmp_path):
    proc = run_without(
        ("sklearn",),
        """
        from dwstft.cli import main
        sys.exit(main(["train", "--model", "stftnet_b8_f128", "--dataset", "digits",
                       "--output", "run"]))
        """,
        tmp_path,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("dwstft train: error: the digits dataset")
    assert "pip install 'dwstft[data]'" in lines[0]
    assert not (tmp_path / "run").exists()


def test_viz_without_matplotlib_names_the_viz_extra(tmp_path):
    proc = run_without(
        ("matplotlib",),
        """
        from dwstft.cli import main
        sys.exit(main(["viz", "basis", "--output", "b.png"]))
        """,
        tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "dwstft viz basis: error: dwstft viz needs matplotlib, which is not installed; "
        "install it with: pip install 'dwstft[viz]'"
    )


def test_training_without_matplotlib_skips_only_the_curves(tmp_path):
    proc = run_without(
        ("matplotlib",),
        """
        from dwstft.cli import main
        sys.exit(main(["train", "--model", "stftnet_b8_f128", "--dataset", "digits",
                       "--epochs", "1", "--recipe", "fast", "--output", "run"]))
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("curves.png is not drawn") == 1
    written = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "last.pt", "best.safetensors", "metrics.jsonl"} <= written
    assert "curves.png" not in written
