"""onnxruntime sessions and their timing, shared by the deployment export (which times
candidate layer forms) and ``dwstft bench models --runtime onnxruntime``.

Every session runs as a deployment would: ``CPUExecutionProvider``, ``INTRA_OP_THREADS``
intra-op threads, one inter-op thread, ``ORT_ENABLE_ALL`` graph optimisation.

Timing several sessions in one process needs care: after a run, a session's idle worker
threads keep spinning for a while, competing for the cores with the next session's run.
``time_runs`` therefore times *blocks* of back-to-back calls of one candidate (at least
``min_block_s`` long) in interleaved rounds and reports the median per-call time, so that
the hand-over between sessions is a small part of every block and load changes on the
machine still hit all candidates alike.
"""

from __future__ import annotations

import math
import time
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
    runs: dict[str, Callable[[], object]],
    rounds: int = 7,
    min_block_s: float = 0.02,
    warmup: int = 3,
) -> dict[str, float]:
    """Median seconds per call of each candidate: each call is made ``warmup`` times, then
    timed in blocks of back-to-back calls at least ``min_block_s`` long (estimated from the
    fastest warm-up call), in ``rounds`` interleaved rounds."""
    reps: dict[str, int] = {}
    for name, run in runs.items():
        fastest = math.inf
        for _ in range(warmup):
            start = time.perf_counter()
            run()
            fastest = min(fastest, time.perf_counter() - start)
        reps[name] = max(1, math.ceil(min_block_s / max(fastest, 1e-6)))

    def block(run: Callable[[], object], count: int) -> Callable[[], None]:
        def call() -> None:
            for _ in range(count):
                run()

        return call

    blocks = {name: block(run, reps[name]) for name, run in runs.items()}
    seconds = time_interleaved(blocks, rounds=rounds, warmup=0)
    return {name: seconds[name] / reps[name] for name in runs}


def session_runner(session: Any, batch: Any) -> Callable[[], object]:
    """A no-argument callable running ``session`` on the array ``batch`` (its first input)."""
    feed = {session.get_inputs()[0].name: batch}
    return lambda: session.run(None, feed)
