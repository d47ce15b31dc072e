"""``dwstft bench layer --dims 1|3``: a tiny side-by-side run and the option's errors."""

import subprocess
import sys

import pytest
import torch

from dwstft.bench.layer import format_layer_table, layer_cases, run_layer_benchmark


@pytest.mark.parametrize(
    ("dims", "shape", "kernel_size"),
    [(3, (4, 6, (6, 12, 12)), (3, 3, 3)), (1, (4, 6, (256,)), (5,))],
)
def test_tiny_nd_run_measures_every_candidate(dims, shape, kernel_size):
    results = run_layer_benchmark(
        (shape,), (kernel_size,), batch=2, rounds=1, progress=False, dims=dims
    )
    (result,) = results
    expected = {"R0", "R1", "R2", "grouped", "folded", "recompute", "auto"}
    assert set(result.seconds) == set(result.saved) == expected
    assert result.auto_path == "folded"
    assert result.saved["auto"] <= result.saved["R1"]
    assert result.saved["grouped"] > result.saved["R1"]  # keeps the M·C maps
    table = format_layer_table(results, 2, torch.device("cpu"), False)
    assert "| 4 | 6 |" in table and "(folded)" in table


def test_layer_cases_defaults_and_validation():
    shapes, sizes = layer_cases(3)
    assert shapes[0] == (32, 64, (16, 32, 32)) and (3, 3, 3) in sizes and (1, 3, 3) in sizes
    assert layer_cases(3, [(5,), (1, 3, 3)])[1] == ((5, 5, 5), (1, 3, 3))
    assert layer_cases(2, [(3,)])[1] == (3,)
    with pytest.raises(ValueError, match="kernel_size must be"):
        layer_cases(3, [(4,)])
    with pytest.raises(ValueError, match="2-D kernels are square"):
        layer_cases(2, [(1, 3, 3)])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dims", "3", "--kernel-sizes", "4"], "kernel_size must be"),
        (["--dims", "2", "--kernel-sizes", "1x3x3"], "2-D kernels are square"),
        (["--dims", "4"], "invalid choice"),
        (["--kernel-sizes", "3xq"], "must be N or TxHxW"),
    ],
)
def test_cli_errors_are_one_line(argv, message):
    proc = subprocess.run(
        [sys.executable, "-m", "dwstft.cli", "bench", "layer", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert lines[0].startswith("dwstft bench layer: error:")
