"""``dwstft bench lpq``: the straightforward reference, a tiny side-by-side run, errors."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from dwstft import lpq
from dwstft.bench.lpq import format_lpq_table, lpq_scipy, photo_crops, run_lpq_benchmark


def test_photo_crops_are_seeded_greyscale_crops():
    crops = photo_crops(4, 64)
    assert crops.shape == (4, 64, 64) and crops.dtype == np.uint8
    assert np.array_equal(crops, photo_crops(4, 64)) and not np.array_equal(crops[0], crops[1])
    with pytest.raises(ValueError, match="at most 427"):
        photo_crops(1, 500)


@pytest.mark.parametrize(("n", "decorrelate"), [(3, True), (7, True), (5, False)])
def test_reference_agrees_with_lpq_on_random_floats(n, decorrelate):
    # Random float images have no exactly-zero coefficients, so the two must agree.
    image = np.random.default_rng(n).normal(size=(30, 34)) * 30
    expected = lpq(torch.from_numpy(image)[None], n, decorrelate)[0].numpy()
    np.testing.assert_array_equal(lpq_scipy(image, n, decorrelate), expected)


def test_tiny_run_and_table():
    result = run_lpq_benchmark(images=4, size=32, window_size=5, rounds=1, compile=False)
    assert set(result.seconds) == {"numpy/scipy", "dwstft.lpq"}
    assert 0 <= result.equal <= 4
    assert result.first_compiled_call is None and result.compiled_matches is None
    table = format_lpq_table(result, torch.device("cpu"))
    assert "| dwstft.lpq |" in table and "speed-up" in table and "compile=True" not in table


@pytest.mark.compile
def test_tiny_run_with_the_compiled_pass():
    result = run_lpq_benchmark(images=3, size=32, window_size=5, rounds=1)
    assert set(result.seconds) == {"numpy/scipy", "dwstft.lpq", "dwstft.lpq, compile=True"}
    assert result.compiled_matches is True and result.first_compiled_call > 0
    table = format_lpq_table(result, torch.device("cpu"))
    assert "| dwstft.lpq, compile=True |" in table and "identical to the eager" in table


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--window-size", "4"], "window_size must be an odd int >= 3"),
        (["--size", "600"], "at most 427"),
        (["--images", "0"], "must be an int >= 1"),
        (["--device", "bogus"], "--device 'bogus' is not a device name"),
        (["--output", "{file}/table.md"], "a-file' is a file, not a folder"),
    ],
)
def test_cli_errors_are_one_line(argv, message, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    argv = [arg.format(file=a_file) for arg in argv]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dwstft.cli",
            "bench",
            "lpq",
            "--images",
            "2",
            "--rounds",
            "1",
            "--no-compile",
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == ""  # refused before the benchmark ran
