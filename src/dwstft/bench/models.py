"""``dwstft bench models``: every STFTNet preset and baseline, side by side in one run.

Per model: trainable parameters, MACs per 32×32 image, training throughput
(forward + backward + Adam step, images/s) at batch 64 and 128, inference latency at
batch 1 and throughput at batch 256 (eval mode, ``torch.inference_mode``), and the memory
of a training step: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the bytes of
tensors autograd saves for backward at batch 64 (the part of a step's memory that grows
with the batch; deterministic, unlike RSS).

Timings are medians of interleaved rounds: each round times every model once, so a load
change on the machine hits all models alike.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dwstft._atomic import atomic_write_text
from dwstft.bench.measure import machine_description, saved_bytes, time_interleaved
from dwstft.models import create_model, list_models
from dwstft.models.complexity import count_macs, count_params

REFERENCE_MODEL = "mobilenetv2"
TRAIN_BATCHES = (64, 128)
INFER_BATCH = 256


@dataclass
class ModelBench:
    """One row of the table; field names are the keys of the JSON records."""

    model: str
    params: int
    macs: int
    train_ips_b64: float
    train_ips_b128: float
    latency_b1_ms: float
    infer_ips_b256: float
    saved_bytes_b64: int
    peak_bytes_b64: int | None


def _prepare(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _batch(n: int, device: torch.device, channels_last: bool, classes: int):
    x = torch.randn(n, 3, 32, 32, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, classes, (n,), device=device)


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def _infer_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.eval()
        with torch.inference_mode():
            model(x)

    return step


def _peak_cuda_bytes(step: Callable[[], None], device: torch.device) -> int | None:
    """Peak CUDA memory a training step adds on top of what was already allocated (every
    benchmarked model stays resident, so the absolute peak would depend on the others)."""
    if device.type != "cuda":
        return None
    step()  # optimizer state exists from here on, as in a real run
    torch.cuda.synchronize(device)
    resident = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - resident


def run_models_benchmark(
    names: list[str] | None = None,
    device: str | torch.device = "cpu",
    rounds: int = 5,
    channels_last: bool = False,
    num_classes: int = 10,
    progress: bool = True,
    compile_mode: str | None = None,
) -> list[ModelBench]:
    """Measure every model in ``names`` (default: all registered) side by side; with
    ``compile_mode`` every model's steps run under ``torch.compile(mode=compile_mode)``
    (compiled before the timed rounds), so the comparison stays fair."""
    from tqdm.auto import tqdm

    device = torch.device(device)
    names = names or list_models()
    torch.manual_seed(0)
    models = {
        n: _prepare(create_model(n, num_classes=num_classes), device, channels_last) for n in names
    }
    runners = {
        n: torch.compile(m, mode=compile_mode) if compile_mode else m for n, m in models.items()
    }
    data = {
        b: _batch(b, device, channels_last, num_classes) for b in (*TRAIN_BATCHES, 1, INFER_BATCH)
    }
    seconds: dict[str, dict[str, float]] = {}
    phases = [(f"train_b{b}", b) for b in TRAIN_BATCHES] + [
        ("infer_b1", 1),
        (f"infer_b{INFER_BATCH}", INFER_BATCH),
    ]
    for phase, b in tqdm(phases, desc="bench models", disable=not progress):
        x, y = data[b]
        steps = {
            n: _train_step(m, x, y) if phase.startswith("train") else _infer_step(m, x)
            for n, m in runners.items()
        }
        seconds[phase] = time_interleaved(steps, rounds=rounds if b > 1 else 5 * rounds)
    results = []
    x64, y64 = data[64]
    for name, model in models.items():
        model.train()
        results.append(
            ModelBench(
                model=name,
                params=count_params(model),
                macs=count_macs(model),
                train_ips_b64=64 / seconds["train_b64"][name],
                train_ips_b128=128 / seconds["train_b128"][name],
                latency_b1_ms=1e3 * seconds["infer_b1"][name],
                infer_ips_b256=INFER_BATCH / seconds[f"infer_b{INFER_BATCH}"][name],
                saved_bytes_b64=saved_bytes(lambda m=model: F.cross_entropy(m(x64), y64)),
                peak_bytes_b64=_peak_cuda_bytes(_train_step(model, x64, y64), device),
            )
        )
    return results


def format_models_table(
    results: list[ModelBench], device: torch.device, channels_last: bool
) -> str:
    """Markdown table with ratios to MobileNetV2 (higher is better for throughput,
    lower for latency and memory)."""
    ref = next((r for r in results if r.model == REFERENCE_MODEL), results[0])
    memory_name = (
        "peak CUDA MiB above the resident weights and optimizer state"
        if ref.peak_bytes_b64 is not None
        else "saved-for-backward MiB"
    )
    lines = [
        f"{machine_description(device)}; float32, {'channels_last' if channels_last else 'NCHW'}; "
        f"ratios (×) to {ref.model}; memory = {memory_name} of a batch-64 training step.",
        "",
        "| model | params (M) | MACs (M) | train img/s b64 | × | train img/s b128 | × "
        "| latency b1 ms | × | infer img/s b256 | × | memory MiB | × |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        mem = r.peak_bytes_b64 if r.peak_bytes_b64 is not None else r.saved_bytes_b64
        ref_mem = ref.peak_bytes_b64 if ref.peak_bytes_b64 is not None else ref.saved_bytes_b64
        lines.append(
            f"| {r.model} | {r.params / 1e6:.2f} | {r.macs / 1e6:.1f} "
            f"| {r.train_ips_b64:.0f} | {r.train_ips_b64 / ref.train_ips_b64:.2f} "
            f"| {r.train_ips_b128:.0f} | {r.train_ips_b128 / ref.train_ips_b128:.2f} "
            f"| {r.latency_b1_ms:.2f} | {r.latency_b1_ms / ref.latency_b1_ms:.2f} "
            f"| {r.infer_ips_b256:.0f} | {r.infer_ips_b256 / ref.infer_ips_b256:.2f} "
            f"| {mem / 2**20:.0f} | {mem / ref_mem:.2f} |"
        )
    return "\n".join(lines)


def write_json(
    results: list[ModelBench] | list[RuntimeBench], path: str, device: torch.device, command: str
) -> None:
    """The JSON that ``dwstft viz pareto`` reads (one record per row of the table)."""
    payload = {
        "device": machine_description(device),
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "models": [asdict(r) for r in results],
    }
    atomic_write_text(path, json.dumps(payload, indent=1))


def profile_training_step(
    name: str, device: str | torch.device = "cpu", batch: int = 64, rows: int = 15
) -> str:
    """Top operators by self time over 3 training steps of one model (torch.profiler)."""
    device = torch.device(device)
    model = create_model(name).to(device)
    x, y = _batch(batch, device, False, 10)
    step = _train_step(model, x, y)
    step()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(3):
            step()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=rows)


# ----------------------------------------------------------------------------------------
# onnxruntime: every model's deployment export beside PyTorch eager

RUNTIME_BATCH = 64


@dataclass
class RuntimeBench:
    """One row of ``dwstft bench models --runtime onnxruntime``: the model exported with
    ``optimize`` (``dwstft.deploy.export.OPTIMIZATIONS``) and run in onnxruntime, beside the
    unmodified model in PyTorch eager; ``max_abs_diff`` / ``logit_scale``: the export's
    check against PyTorch (``dwstft.deploy.verify.verify_export``)."""

    model: str
    optimize: str
    params: int
    ort_latency_b1_ms: float
    ort_ips_b64: float
    eager_latency_b1_ms: float
    eager_ips_b64: float
    max_abs_diff: float
    logit_scale: float
    rewrites: str


def calibrate_batchnorm(model: nn.Module, in_chans: int = 3, batches: int = 2) -> nn.Module:
    """Give every BatchNorm the running statistics of its inputs on random images, as
    training would (so eval-mode BatchNorm is not the identity and the logits have a
    realistic scale); returns the model in eval mode."""
    momenta = {}
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            momenta[m] = m.momentum
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(32, in_chans, 32, 32))
    for m, momentum in momenta.items():
        m.momentum = momentum
    return model.eval()


#: The row kind of ``run_runtime_benchmark`` for the int8 model of the portable graph.
INT8 = "int8"


def _export_for_runtime(model: nn.Module, path: Path, kind: str) -> tuple[float, float, str]:
    """Write ``model``'s export ``kind`` (an ``OPTIMIZATIONS`` entry or ``INT8``) to
    ``path``; returns (max |exported − PyTorch|, logit scale, rewrites done)."""
    from dwstft.deploy.export import export_model, export_onnx, prepare_model
    from dwstft.deploy.quantize import quantize_int8
    from dwstft.deploy.verify import verify_export

    if kind != INT8:
        report = export_model(model, path, "onnx", optimize=kind)
        check, rewrites = report.verification, report.rewrites
    else:
        # Speed only: calibrated on random images (accuracy: `dwstft export --quantize`).
        prepared = prepare_model(model, "portable")
        float_path = path.with_suffix(".float.onnx")
        export_onnx(prepared.module, float_path)
        quantize_int8(float_path, path, torch.randn(64, 3, 32, 32).numpy())
        check, rewrites = verify_export(path, "onnx", model), prepared.rewrites
    return check.max_abs_diff, check.scale, rewrites.describe() if rewrites is not None else ""


def run_runtime_benchmark(
    names: list[str] | None = None,
    optimizations: tuple[str, ...] = ("onnxruntime",),
    rounds: int = 5,
    num_classes: int = 10,
    progress: bool = True,
) -> list[RuntimeBench]:
    """Export every model in ``names`` (default: all registered; random weights with
    calibrated BatchNorm) once per entry of ``optimizations`` (``OPTIMIZATIONS`` entries,
    or ``INT8``: the portable graph quantized by onnxruntime, calibrated on random
    images) into a temporary folder, then time all exports in onnxruntime
    (:mod:`dwstft.deploy.runtime`) and every unmodified model in PyTorch eager side by
    side: batch-1 latency and batch-64 throughput (``dwstft.deploy.runtime.time_runs``;
    onnxruntime and PyTorch in separate phases)."""
    import tempfile

    from tqdm.auto import tqdm

    from dwstft.deploy.runtime import create_session, session_runner, time_runs

    names = names or list_models()
    torch.manual_seed(0)
    models = {n: calibrate_batchnorm(create_model(n, num_classes=num_classes)) for n in names}
    rows = [(n, o) for n in names for o in optimizations]
    with tempfile.TemporaryDirectory(prefix="dwstft-bench-") as folder:
        checks, sessions = {}, {}
        for name, kind in tqdm(rows, desc="export", disable=not progress):
            path = Path(folder) / f"{name}.{kind}.onnx"
            checks[name, kind] = _export_for_runtime(models[name], path, kind)
            sessions[name, kind] = create_session(path)
        seconds = {}
        for batch in tqdm((1, RUNTIME_BATCH), desc="time", disable=not progress):
            x = torch.randn(batch, 3, 32, 32)
            calls = 20 if batch == 1 else 2
            ort_runs = {row: session_runner(sessions[row], x.numpy()) for row in rows}
            seconds["ort", batch] = time_runs(ort_runs, rounds=rounds, calls=calls)
            # PyTorch in its own phase: its OpenMP threads spin after a call as well.
            eager_runs = {n: _infer_step(models[n], x) for n in names}
            seconds["eager", batch] = time_runs(eager_runs, rounds=rounds, calls=calls)
    results = []
    for name, kind in rows:
        diff, scale, rewrites = checks[name, kind]
        results.append(
            RuntimeBench(
                model=name,
                optimize=kind,
                params=count_params(models[name]),
                ort_latency_b1_ms=1e3 * seconds["ort", 1][name, kind],
                ort_ips_b64=RUNTIME_BATCH / seconds["ort", RUNTIME_BATCH][name, kind],
                eager_latency_b1_ms=1e3 * seconds["eager", 1][name],
                eager_ips_b64=RUNTIME_BATCH / seconds["eager", RUNTIME_BATCH][name],
                max_abs_diff=diff,
                logit_scale=scale,
                rewrites=rewrites,
            )
        )
    return results


def format_runtime_table(results: list[RuntimeBench]) -> str:
    """Markdown table with ratios to MobileNetV2's first row (throughput: higher is
    better; latency: lower is better)."""
    import onnxruntime

    from dwstft.deploy.runtime import INTRA_OP_THREADS

    ref = next((r for r in results if r.model == REFERENCE_MODEL), results[0])
    lines = [
        f"{machine_description(torch.device('cpu'))}; onnxruntime {onnxruntime.__version__} "
        f"(CPUExecutionProvider, {INTRA_OP_THREADS} intra-op threads, ORT_ENABLE_ALL); "
        f"float32 (int8 rows: QDQ, calibrated on random images); ratios (×) to {ref.model} "
        f"({ref.optimize}); max abs diff: exported vs PyTorch logits (batch 2 and 1).",
        "",
        "| model | export | ORT latency b1 ms | × | ORT img/s b64 | × | eager latency b1 ms "
        "| eager img/s b64 | ORT speed-up b1 / b64 | max abs diff (logit scale) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.model} | {r.optimize} "
            f"| {r.ort_latency_b1_ms:.2f} | {r.ort_latency_b1_ms / ref.ort_latency_b1_ms:.2f} "
            f"| {r.ort_ips_b64:.0f} | {r.ort_ips_b64 / ref.ort_ips_b64:.2f} "
            f"| {r.eager_latency_b1_ms:.2f} | {r.eager_ips_b64:.0f} "
            f"| {r.eager_latency_b1_ms / r.ort_latency_b1_ms:.1f} / "
            f"{r.ort_ips_b64 / r.eager_ips_b64:.1f} "
            f"| {r.max_abs_diff:.1e} ({r.logit_scale:.2g}) |"
        )
    return "\n".join(lines)
