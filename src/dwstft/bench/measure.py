"""Measurement primitives shared by the benchmarks: interleaved timing and the bytes of
tensors autograd saves for backward."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch

from dwstft._allocator import allocator_configured


def time_interleaved(
    candidates: dict[str, Callable[[], object]], rounds: int = 7, warmup: int = 1
) -> dict[str, float]:
    """Median wall time in seconds of each candidate, measured in interleaved rounds.

    Each round runs every candidate once, so a load change on the machine hits all of
    them alike and the ratios between them stay meaningful. (``torch.utils.benchmark``
    times one candidate at a time in a block, which a noisy 2-core machine skews.)
    CUDA work is synchronised before each clock read.
    """
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in samples.items()}


def saved_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of the distinct storages autograd keeps for backward while ``fn`` builds its
    graph (parameters included). Measured with ``saved_tensors_hooks``; the graph is freed
    before returning."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


def machine_description(device: torch.device) -> str:
    """One line naming the device, threads, torch version and allocator settings."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_model() or platform.processor() or "CPU"
    alloc = "glibc mallopt(keep memory)" if allocator_configured() else "default allocator"
    return f"{name}, {torch.get_num_threads()} threads, torch {torch.__version__}, {alloc}"


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None
