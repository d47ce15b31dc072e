"""``dwstft bench budget``: what ``dwstft reproduce table2`` costs on this device.

For every Table 2 row, the recipe it trains with (``dwstft.train.table2.recipe_for``, e.g.
the paper's batch 64 for 300 epochs then 128 for 100, or the baselines' batch 128 for 200)
and the training throughput of that network at each of the recipe's batch sizes, measured
side by side (interleaved rounds, one optimiser step of the recipe's optimiser per call),
eager and, with ``compile_mode``, under ``torch.compile``, and with ``capture`` (CUDA only)
as one captured CUDA graph per step (:mod:`dwstft.bench.capture`). The hours are the
training images of one dataset (50,000 per epoch) over those throughputs, times the
datasets; evaluation and data loading are not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dwstft.bench.capture import capture_training_step
from dwstft.bench.measure import time_interleaved
from dwstft.models import create_model
from dwstft.train.config import TrainConfig, make_config
from dwstft.train.evaluate import autocast
from dwstft.train.optim import build_optimizer
from dwstft.train.table2 import recipe_for

#: Training images per epoch of CIFAR-10 and CIFAR-100.
CIFAR_TRAIN_IMAGES = 50_000


@dataclass
class RowBudget:
    """One Table 2 row: its recipe's phases and the measured images/s per batch size."""

    model: str
    recipe: str
    phases: tuple[tuple[int, int], ...]  # (epochs, batch size)
    eager_ips: dict[int, float]
    compiled_ips: dict[int, float] | None
    captured_ips: dict[int, float] | None = None

    def hours(self, ips: dict[int, float], datasets: int) -> float:
        """Training hours for ``datasets`` datasets at throughputs ``ips``."""
        seconds = sum(epochs * CIFAR_TRAIN_IMAGES / ips[batch] for epochs, batch in self.phases)
        return datasets * seconds / 3600


def recipe_phases(config: TrainConfig) -> tuple[tuple[int, int], ...]:
    """(epochs, global batch size) of each constant-batch phase of a recipe."""
    phases = [(config.epochs - config.final_epochs, config.batch_size)]
    if config.final_epochs:
        phases.append((config.final_epochs, config.final_batch_size))
    return tuple((e, b) for e, b in phases if e > 0)


def _random_batch(batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A CIFAR-shaped batch: images (batch, 3, 32, 32) and labels of 100 classes."""
    x = torch.randn(batch, 3, 32, 32, device=device)
    return x, torch.randint(0, 100, (batch,), device=device)


def _step(model: torch.nn.Module, config: TrainConfig, batch: int, device: torch.device, amp: bool):
    x, y = _random_batch(batch, device)
    optimizer = build_optimizer(model, config)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp, "bfloat16"):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def _captured_step(
    model: torch.nn.Module, config: TrainConfig, batch: int, device: torch.device, amp: bool
):
    x, y = _random_batch(batch, device)
    optimizer = build_optimizer(model, config)
    return capture_training_step(model, optimizer, x, y, amp, "bfloat16")


def run_budget(
    models: tuple[str, ...],
    device: str | torch.device = "cpu",
    rounds: int = 5,
    compile_mode: str | None = None,
    capture: bool = False,
    extra_batches: tuple[int, ...] = (),
    amp: bool = False,
    progress: bool = True,
) -> list[RowBudget]:
    """Measure every row's throughput at its recipe's batch sizes (see the module docstring);
    with ``compile_mode`` also under ``torch.compile(mode=compile_mode)``, with ``capture``
    also as a captured CUDA graph of the eager step. ``extra_batches`` are measured too
    (to compare rows at one batch size); the hours use the recipe's own. ``amp`` runs every
    forward and loss under bfloat16 autocast."""
    from tqdm.auto import tqdm

    device = torch.device(device)
    rows, candidates = [], {}
    for name in models:
        recipe = recipe_for(name, "auto")
        config = make_config(recipe, model=name, dataset="cifar100", output="-")
        phases = recipe_phases(config)
        compiled_ips, captured_ips = ({} if compile_mode else None), ({} if capture else None)
        rows.append(RowBudget(name, recipe, phases, {}, compiled_ips, captured_ips))
        torch.manual_seed(0)
        model = create_model(name, num_classes=100).to(device).train()
        compiled = torch.compile(model, mode=compile_mode) if compile_mode else None
        for batch in sorted({b for _, b in phases} | set(extra_batches)):
            candidates[(name, "eager", batch)] = _step(model, config, batch, device, amp)
            if compiled is not None:
                candidates[(name, "compiled", batch)] = _step(compiled, config, batch, device, amp)
            if capture:
                captive = create_model(name, num_classes=100).to(device).train()
                candidates[(name, "captured", batch)] = _captured_step(
                    captive, config, batch, device, amp
                )
    keys = {k: "|".join(map(str, k)) for k in candidates}
    steps: dict[str, Callable[[], None]] = {keys[k]: fn for k, fn in candidates.items()}
    for fn in tqdm(steps.values(), desc="compile/warm up", disable=not progress):
        fn()  # compiles outside the timed rounds
    seconds = time_interleaved(steps, rounds=rounds)
    by_model = {row.model: row for row in rows}
    for name, kind, batch in candidates:
        row = by_model[name]
        target = {"eager": row.eager_ips, "compiled": row.compiled_ips}.get(kind, row.captured_ips)
        target[batch] = batch / seconds[keys[(name, kind, batch)]]
    return rows


def format_budget_table(rows: list[RowBudget], header: str, datasets: int = 2) -> str:
    """Markdown: per row the recipe, images/s per batch size and the training hours, eager
    and for each faster way measured (with its speed-up over eager)."""
    ways = [("compiled", lambda r: r.compiled_ips), ("captured", lambda r: r.captured_ips)]
    ways = [(label, get) for label, get in ways if get(rows[0]) is not None]
    title = "| network | recipe | phases (epochs × batch) | eager img/s | eager h |"
    rule = "|---|---|---|---|---:|"
    for label, _ in ways:
        title += f" {label} img/s | {label} h | speed-up |"
        rule += "---|---:|---:|"
    lines = [header, "", title, rule]
    totals = [0.0] * (1 + len(ways))
    for row in rows:
        phases = " + ".join(f"{e} × {b}" for e, b in row.phases)
        hours = row.hours(row.eager_ips, datasets)
        totals[0] += hours
        line = f"| {row.model} | {row.recipe} | {phases} | {_rates(row.eager_ips)} | {hours:.1f} |"
        for i, (_, get) in enumerate(ways, start=1):
            fast_hours = row.hours(get(row), datasets)
            totals[i] += fast_hours
            line += f" {_rates(get(row))} | {fast_hours:.1f} | {hours / fast_hours:.2f} |"
        lines.append(line)
    total = f"| **all rows, {datasets} datasets** | | | | **{totals[0]:.1f}** |"
    for fast_total in totals[1:]:
        total += f" | **{fast_total:.1f}** | {totals[0] / fast_total:.2f} |"
    lines.append(total)
    return "\n".join(lines)


def _rates(ips: dict[int, float]) -> str:
    return ", ".join(f"b{b}: {v:,.0f}" for b, v in sorted(ips.items()))
