"""onnxruntime sessions and their timing, shared by the deployment export (which times
candidate layer forms) and ``dwstft bench models --runtime onnxruntime``.

Every session runs as a deployment would: ``CPUExecutionProvider``, ``INTRA_OP_THREADS``
intra-op threads (each session its own pool, worker threads spinning between operators),
one inter-op thread, ``ORT_ENABLE_ALL`` graph optimisation.

Sessions are timed one call at a time in interleaved rounds (``time_runs``), reporting the
median call. On a shared machine a call is now and then preempted by other processes; the
median of single calls drops those calls, where the mean of a block of back-to-back calls
would carry them (measured: blocks of 20 batch-1 calls read up to 5x slower than their
median call under load).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dwstft.bench.measure import time_interleaved

#: Intra-op threads of every benchmarked session (the project's 2-core reference machine).
INTRA_OP_THREADS = 2


def session_options(
    threads: int = INTRA_OP_THREADS,
    optimized_model_path: str | Path | None = None,
    profile_prefix: str | Path | None = None,
) -> Any:
    """``onnxruntime.SessionOptions`` of a CPU deployment: ``threads`` intra-op threads,
    one inter-op thread, ``ORT_ENABLE_ALL``. ``optimized_model_path``: also write the graph
    onnxruntime runs (after its fusions and layout changes) there; ``profile_prefix``:
    record per-node timings (``InferenceSession.end_profiling``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: not the NCHWc "hardware specific" notice
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    return options


def create_session(model: str | Path | bytes, threads: int = INTRA_OP_THREADS, **options: Any):
    """An ``onnxruntime.InferenceSession`` on the CPU for an ONNX file or serialised
    model, with :func:`session_options` (``options`` are passed on to it)."""
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(
        source, session_options(threads, **options), providers=["CPUExecutionProvider"]
    )


def time_runs(
    runs: dict[str, Callable[[], object]], rounds: int = 7, warmup: int = 3
) -> dict[str, float]:
    """Median seconds per call of each candidate: ``warmup`` untimed calls each, then
    ``rounds`` interleaved rounds of one call each (``dwstft.bench.measure.time_interleaved``)."""
    return time_interleaved(runs, rounds=rounds, warmup=warmup)


def session_runner(session: Any, batch: Any) -> Callable[[], object]:
    """A no-argument callable running ``session`` on the array ``batch`` (its first input)."""
    feed = {session.get_inputs()[0].name: batch}
    return lambda: session.run(None, feed)
