"""``dwstft bench budget``: what ``dwstft reproduce table2`` costs on this device.

For every Table 2 row, the recipe it trains with (``reproduce.recipe_for``, e.g. the paper's
batch 64 for 300 epochs then 128 for 100, or the baselines' batch 128 for 200) and the
training throughput of that network at each of the recipe's batch sizes, measured side by
side (interleaved rounds, one optimiser step of the recipe's optimiser per call), eager and,
with ``compile_mode``, under ``torch.compile``. The hours are the training images of one
dataset (50,000 per epoch) over those throughputs, times the datasets; evaluation and data
loading are not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dwstft.bench.measure import time_interleaved
from dwstft.models import create_model
from dwstft.train.config import TrainConfig, make_config
from dwstft.train.optim import build_optimizer

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


def _step(model: torch.nn.Module, config: TrainConfig, batch: int, device: torch.device):
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 100, (batch,), device=device)
    optimizer = build_optimizer(model, config)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def run_budget(
    models: tuple[str, ...],
    device: str | torch.device = "cpu",
    rounds: int = 5,
    compile_mode: str | None = None,
    progress: bool = True,
) -> list[RowBudget]:
    """Measure every row's throughput at its recipe's batch sizes (see the module docstring);
    with ``compile_mode`` also under ``torch.compile(mode=compile_mode)``."""
    from tqdm.auto import tqdm

    from dwstft.reproduce import recipe_for

    device = torch.device(device)
    rows, candidates = [], {}
    for name in models:
        recipe = recipe_for(name, "auto")
        config = make_config(recipe, model=name, dataset="cifar100", output="-")
        phases = recipe_phases(config)
        rows.append(RowBudget(name, recipe, phases, {}, {} if compile_mode else None))
        torch.manual_seed(0)
        model = create_model(name, num_classes=100).to(device).train()
        compiled = torch.compile(model, mode=compile_mode) if compile_mode else None
        for batch in sorted({b for _, b in phases}):
            candidates[(name, "eager", batch)] = _step(model, config, batch, device)
            if compiled is not None:
                candidates[(name, "compiled", batch)] = _step(compiled, config, batch, device)
    keys = {k: "|".join(map(str, k)) for k in candidates}
    steps: dict[str, Callable[[], None]] = {keys[k]: fn for k, fn in candidates.items()}
    for fn in tqdm(steps.values(), desc="compile/warm up", disable=not progress):
        fn()  # compiles outside the timed rounds
    seconds = time_interleaved(steps, rounds=rounds)
    by_model = {row.model: row for row in rows}
    for name, kind, batch in candidates:
        row = by_model[name]
        target = row.eager_ips if kind == "eager" else row.compiled_ips
        target[batch] = batch / seconds[keys[(name, kind, batch)]]
    return rows


def format_budget_table(rows: list[RowBudget], header: str, datasets: int = 2) -> str:
    """Markdown: per row the recipe, images/s per batch size and the training hours."""
    compiled = rows[0].compiled_ips is not None
    title = "| network | recipe | phases (epochs × batch) | eager img/s | eager h |"
    rule = "|---|---|---|---|---:|"
    if compiled:
        title += " compiled img/s | compiled h | speed-up |"
        rule += "---|---:|---:|"
    lines = [header, "", title, rule]
    totals = [0.0, 0.0]
    for row in rows:
        phases = " + ".join(f"{e} × {b}" for e, b in row.phases)
        eager = ", ".join(f"b{b}: {v:,.0f}" for b, v in sorted(row.eager_ips.items()))
        hours = row.hours(row.eager_ips, datasets)
        totals[0] += hours
        line = f"| {row.model} | {row.recipe} | {phases} | {eager} | {hours:.1f} |"
        if compiled:
            fast = ", ".join(f"b{b}: {v:,.0f}" for b, v in sorted(row.compiled_ips.items()))
            fast_hours = row.hours(row.compiled_ips, datasets)
            totals[1] += fast_hours
            line += f" {fast} | {fast_hours:.1f} | {hours / fast_hours:.2f} |"
        lines.append(line)
    total = f"| **all rows, {datasets} datasets** | | | | **{totals[0]:.1f}** |"
    if compiled:
        total += f" | **{totals[1]:.1f}** | {totals[0] / totals[1]:.2f} |"
    lines.append(total)
    return "\n".join(lines)
