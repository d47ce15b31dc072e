"""``dwstft bench compile``: what ``torch.compile`` costs and gains for a training step.

For each target, a fresh Python process (so nothing is compiled yet) builds one training
step (forward, cross-entropy or squared-output loss, backward, Adam update) and measures:
the eager step (median of ``steps``), the first compiled step (cold compile: Inductor's
cache folder is new and empty), the compiled step (median), then a second process with the
same cache folder measures the first compiled step again (warm compile: what a later run
pays, since Inductor caches compiled graphs on disk).

Targets are registered models (``stftnet_b8_f128``) or single layers written
``layer:C,F,n,impl`` (a Depthwise-STFT separable layer C → F with kernel size n and the
given execution path, at 32×32): the comparison behind ``impl="auto"`` under compile.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dwstft._allocator import configure_allocator

#: Samples per step for the model targets (the paper's batch) and for layer targets.
MODEL_BATCH = 64
LAYER_BATCH = 32


@dataclass
class CompileResult:
    """One target: seconds of an eager step, of a compiled step, and of the first compiled
    step with a cold and with a warm cache."""

    target: str
    eager_s: float
    compiled_s: float
    cold_first_s: float
    warm_first_s: float


def _build(
    target: str, device: torch.device
) -> tuple[nn.Module, torch.Tensor, torch.Tensor | None]:
    """(module, input, labels or None) for a target name."""
    torch.manual_seed(0)
    if target.startswith("layer:"):
        from dwstft.nn.layers import DepthwiseSTFTSeparable

        c, f, n, impl = target.split(":", 1)[1].split(",")
        layer = DepthwiseSTFTSeparable(int(c), int(f), int(n), impl=impl)
        module = nn.Sequential(layer, nn.ReLU())
        return module.to(device), torch.randn(LAYER_BATCH, int(c), 32, 32, device=device), None
    from dwstft.models import create_model

    model = create_model(target, num_classes=10).to(device)
    x = torch.randn(MODEL_BATCH, 3, 32, 32, device=device)
    return model, x, torch.randint(0, 10, (MODEL_BATCH,), device=device)


def _median_step(step, steps: int) -> float:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_in_this_process(target: str, steps: int, device: str, mode: str | None) -> dict:
    """Eager step, first compiled step and compiled step of ``target``, in seconds (with the
    CLI's allocator settings, as every benchmark here)."""
    configure_allocator()
    dev = torch.device(device)
    module, x, y = _build(target, dev)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)

    def step_of(net: nn.Module):
        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            out = net(x)
            loss = out.square().mean() if y is None else F.cross_entropy(out, y)
            loss.backward()
            optimizer.step()

        return step

    eager = step_of(module)
    eager()
    eager_s = _median_step(eager, steps)
    compiled = step_of(torch.compile(module, mode=mode))
    start = time.perf_counter()
    compiled()
    first_s = time.perf_counter() - start
    return {"eager_s": eager_s, "first_s": first_s, "compiled_s": _median_step(compiled, steps)}


def _worker(target: str, steps: int, device: str, mode: str | None, cache: str) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    code = (
        "import json, sys; from dwstft.bench.compile import measure_in_this_process as m; "
        "print(json.dumps(m(*json.loads(sys.argv[1]))))"
    )
    args = json.dumps([target, steps, device, mode])
    proc = subprocess.run(
        [sys.executable, "-c", code, args], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"compiling {target!r} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_compile_benchmark(
    targets: list[str], steps: int = 10, device: str = "cpu", mode: str | None = None
) -> list[CompileResult]:
    """Measure every target, each in fresh processes (see the module docstring)."""
    results = []
    for target in targets:
        with tempfile.TemporaryDirectory(prefix="dwstft-inductor-") as cache:
            cold = _worker(target, steps, device, mode, cache)
            warm = _worker(target, steps, device, mode, cache)
        results.append(
            CompileResult(
                target=target,
                eager_s=statistics.median([cold["eager_s"], warm["eager_s"]]),
                compiled_s=statistics.median([cold["compiled_s"], warm["compiled_s"]]),
                cold_first_s=cold["first_s"],
                warm_first_s=warm["first_s"],
            )
        )
    return results


def format_compile_table(results: list[CompileResult], header: str) -> str:
    """Markdown table; ratio = eager step time / compiled step time (> 1: compile wins)."""
    lines = [
        header,
        "",
        "| target | eager step ms | compiled step ms | speed-up | cold compile s "
        "| warm compile s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.target} | {1e3 * r.eager_s:.0f} | {1e3 * r.compiled_s:.0f} "
            f"| {r.eager_s / r.compiled_s:.2f} | {r.cold_first_s:.1f} | {r.warm_first_s:.1f} |"
        )
    return "\n".join(lines)
