"""onnxruntime timing (dwstft.deploy.runtime) and ``dwstft bench models --runtime
onnxruntime``. No speed is asserted: timing is checked on a fake clock, the benchmark for
its rows, its export checks and the files it leaves."""

import tempfile
import time

import pytest
from torch import nn

from dwstft.bench.models import RuntimeBench, format_runtime_table, run_runtime_benchmark
from dwstft.deploy.runtime import session_options, time_runs
from dwstft.models import registry
from dwstft.models.stftnet import stftnet

TINY = "_test_tiny_runtime_stftnet"


class FakeClock:
    """``time.perf_counter`` that only advances when a candidate runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_time_runs_drops_warmup_and_first_calls_and_takes_the_median(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(time, "perf_counter", clock)
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    # Per candidate: 2 warm-up calls, then 2 rounds of 1 + 3 calls (the first one of each
    # block pays the wake-up); one call in the second block is preempted.
    durations = {
        "fast": iter([9, 9, 7, 0.004, 0.004, 0.004, 7, 0.004, 0.5, 0.004]),
        "slow": iter([9, 9, 7, 0.05, 0.05, 0.06, 7, 0.05, 0.05, 0.05]),
    }

    def run(name: str):
        def call() -> None:
            clock.now += next(durations[name])

        return call

    result = time_runs({"fast": run("fast"), "slow": run("slow")}, rounds=2, calls=3, warmup=2)
    assert result == pytest.approx({"fast": 0.004, "slow": 0.05})
    assert all(next(d, None) is None for d in durations.values())  # every call was made
    assert slept == [0.05] * 4  # before each block: the previous pool goes idle


def test_session_options_are_a_cpu_deployment():
    import onnxruntime as ort

    options = session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


@pytest.fixture
def tiny_registered(monkeypatch):
    def tiny(num_classes: int = 10, in_chans: int = 3, **kwargs: object) -> nn.Module:
        return stftnet(4, 16, num_classes, in_chans, stage_blocks=(2,), **kwargs)

    monkeypatch.setitem(registry._MODELS, TINY, tiny)
    return TINY


def test_runtime_benchmark_rows_checks_and_no_files_left(tmp_path, monkeypatch, tiny_registered):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    results = run_runtime_benchmark(
        [TINY], ("onnxruntime", "none", "int8"), rounds=1, progress=False
    )
    assert [r.optimize for r in results] == ["onnxruntime", "none", "int8"]
    int8 = results.pop()
    # 8-bit rounding: off, but by a small fraction of the logit scale.
    assert 1e-4 * int8.logit_scale < int8.max_abs_diff < 0.2 * int8.logit_scale
    assert int8.rewrites == results[0].rewrites and int8.ort_latency_b1_ms > 0
    for r in results:
        assert isinstance(r, RuntimeBench)
        assert r.max_abs_diff <= 1e-4 * max(1.0, r.logit_scale) and r.logit_scale > 0
        assert min(r.ort_latency_b1_ms, r.ort_ips_b64, r.eager_latency_b1_ms, r.eager_ips_b64) > 0
    # One conv+BN (stem) and one Block 1 fold; one Block 2: its sum+BN, its skip scale.
    assert results[0].rewrites == "2 conv+BN folded, 1 sum+BN folded, 1/1 skip scales absorbed"
    assert results[1].rewrites == ""
    # The same unmodified model is timed in eager once and reported on both rows.
    assert results[0].eager_ips_b64 == results[1].eager_ips_b64
    # Exports went to a temporary folder that is gone (torch.export may leave its
    # compiler cache there: not the benchmark's).
    assert not list(tmp_path.glob("dwstft-bench-*")) and not list(tmp_path.rglob("*.onnx"))


def test_format_runtime_table_ratios_to_mobilenetv2():
    rows = [
        RuntimeBench("stftnet_b8_f128", "onnxruntime", 1, 1.0, 300.0, 9.0, 60.0, 1e-6, 2.0, ""),
        RuntimeBench("mobilenetv2", "onnxruntime", 2, 2.0, 150.0, 8.0, 40.0, 1e-6, 1.0, ""),
    ]
    table = format_runtime_table(rows)
    assert "ratios (×) to mobilenetv2 (onnxruntime)" in table
    line = next(r for r in table.splitlines() if r.startswith("| stftnet_b8_f128"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # latency 1.0 ms vs 2.0 → 0.50; throughput 300 vs 150 → 2.00; eager/ORT 9.0 / 1.0.
    assert cells[2:6] == ["1.00", "0.50", "300", "2.00"]
    assert cells[8] == "9.0 / 5.0"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--optimize", "fold"], "--optimize applies to --runtime onnxruntime only"),
        (["--runtime", "onnxruntime", "--channels-last"], "runs on the CPU in NCHW"),
    ],
)
def test_bench_models_option_errors_are_one_line(argv, message):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "dwstft.cli", "bench", "models", "--models", "mobilenet", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("dwstft bench models: error: ") and message in line
