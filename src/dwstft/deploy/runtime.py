"""onnxruntime sessions and their timing, shared by the deployment export (which times
candidate layer forms) and ``dwstft bench models --runtime onnxruntime``.

Every session runs as a deployment would: ``CPUExecutionProvider``, ``INTRA_OP_THREADS``
intra-op threads (each session its own pool, worker threads spinning between operators),
one inter-op thread, ``ORT_ENABLE_ALL`` graph optimisation.

Timing several sessions in one process needs care on a 2-core machine: after its last
call a session's idle worker thread keeps spinning for about 30 ms (measured with
``getrusage``), so calls of another session made meanwhile share the cores with it; with
seven sessions called in turn every session ran 2-4x slower than alone. ``time_runs``
therefore lets each candidate's pool go idle (``settle_s``) before a block of back-to-back
calls of that candidate, and reports the median single call over all blocks, the first
call of each block excluded (it pays the worker's wake-up). Rounds interleave the
candidates so that load changes on the machine hit them alike, and the median drops the
calls preempted by other processes (a block's mean would keep them).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    runs: dict[str, Callable[[], object]],
    rounds: int = 5,
    calls: int = 5,
    settle_s: float = 0.05,
    warmup: int = 2,
) -> dict[str, float]:
    """Median seconds per call of each candidate: ``warmup`` untimed calls each, then
    ``rounds`` rounds in which every candidate in turn waits ``settle_s`` and makes a
    block of ``calls`` + 1 timed back-to-back calls, the first of which is dropped."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            time.sleep(settle_s)
            for call in range(calls + 1):
                start = time.perf_counter()
                run()
                if call:
                    samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def session_runner(session: Any, batch: Any) -> Callable[[], object]:
    """A no-argument callable running ``session`` on the array ``batch`` (its first input)."""
    feed = {session.get_inputs()[0].name: batch}
    return lambda: session.run(None, feed)
