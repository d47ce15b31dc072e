"""``dwstft reproduce table2``: train every Table 2 row and set our numbers beside the paper's.

Each (dataset, model) run lives in ``OUTPUT/<dataset>/<model>/`` (a normal ``dwstft train``
run folder). The harness is resumable run by run: a finished run (``metrics.jsonl`` holds
every epoch) is read, not redone; an interrupted one continues from its ``last.pt``; the
rest start fresh. ``OUTPUT/reproduction.md`` is rewritten after every run, so a partial
sweep still leaves a readable table.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from dwstft._atomic import atomic_write_text
from dwstft.bench.complexity import count_params
from dwstft.models import create_model, paper_reference
from dwstft.train.config import make_config, resolve_config
from dwstft.train.loop import train
from dwstft.train.metrics import read_history

#: Table 2's rows, in the paper's order.
TABLE2_MODELS = (
    "shufflenet",
    "shufflenetv2",
    "mobilenet",
    "mobilenetv2",
    "relpunet",
    "stftnet_b8_f128",
    "stftnet_b16_f128",
    "stftnet_b32_f128",
    "stftnet_b64_f128",
    "stftnet_b64_f256",
    "stftnet_b64_f384",
)
DATASETS = ("cifar10", "cifar100", "digits")
_PAPER_COLUMN = {"cifar10": "cifar10", "cifar100": "cifar100"}


@dataclass
class RunOutcome:
    """Accuracies (fractions) of one finished run, or ``None`` if not finished."""

    final_acc: float | None
    best_acc: float | None
    epochs_done: int


def run_state(run_dir: Path, epochs: int) -> str:
    """``"done"`` (all ``epochs`` recorded), ``"partial"`` (a ``last.pt`` to resume) or
    ``"new"``."""
    if (run_dir / "metrics.jsonl").exists() and len(read_history(run_dir)) >= epochs:
        return "done"
    return "partial" if (run_dir / "last.pt").exists() else "new"


def outcome(run_dir: Path) -> RunOutcome:
    """What ``run_dir`` has recorded so far."""
    if not (run_dir / "metrics.jsonl").exists():
        return RunOutcome(None, None, 0)
    history = read_history(run_dir)
    if not history:
        return RunOutcome(None, None, 0)
    return RunOutcome(history[-1]["test_acc"], max(r["test_acc"] for r in history), len(history))


def run_table2(
    output: str | Path,
    datasets: tuple[str, ...] = ("cifar10", "cifar100"),
    models: tuple[str, ...] = TABLE2_MODELS,
    recipe: str = "paper",
    epochs: int | None = None,
    data_dir: str | None = None,
    device: str | None = None,
    seed: int = 0,
    command: str = "",
) -> Path:
    """Train what is not yet trained and write ``output/reproduction.md``; returns its path.

    ``epochs`` defaults to the recipe's; other hyper-parameters are the recipe's."""
    for name, values, choices in (("datasets", datasets, DATASETS), ("models", models, None)):
        if not values:
            raise ValueError(f"{name} must name at least one entry, got {values!r}")
        if choices and set(values) - set(choices):
            raise ValueError(f"{name} must be among {choices}, got {values!r}")
    for name in models:
        create_model(name)  # fail fast on an unknown name, before hours of training
    output = Path(output)
    probe = make_config(
        recipe, model=models[0], dataset=datasets[0], output=str(output), epochs=epochs
    )
    total_epochs = probe.epochs
    for dataset in datasets:
        for name in models:
            run_dir = output / dataset / name
            state = run_state(run_dir, total_epochs)
            print(f"[reproduce] {dataset} / {name}: {state}", flush=True)
            try:
                if state == "partial":
                    resumed = resolve_config(
                        resume=str(run_dir / "last.pt"), device=device, data_dir=data_dir
                    )
                    train(resumed)
                elif state == "new":
                    train(
                        make_config(
                            recipe,
                            model=name,
                            dataset=dataset,
                            output=str(run_dir),
                            epochs=epochs,
                            data_dir=data_dir,
                            device=device,
                            seed=seed,
                        )
                    )
            finally:
                write_report(output, datasets, models, recipe, total_epochs, command)
    return output / "reproduction.md"


def write_report(
    output: Path,
    datasets: tuple[str, ...],
    models: tuple[str, ...],
    recipe: str,
    epochs: int,
    command: str,
) -> None:
    """(Re)write ``output/reproduction.md`` from the run folders."""
    config_path = next(output.glob("*/*/config.json"), None)
    schedule = ""
    if config_path is not None:
        cfg = json.loads(config_path.read_text(encoding="utf-8"))
        schedule = (
            f" ({cfg['opt']}, lr {cfg['lr']}, batch {cfg['batch_size']} for "
            f"{cfg['epochs'] - cfg['final_epochs']} epochs then {cfg['final_batch_size']} for "
            f"{cfg['final_epochs']})"
        )
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Table 2 reproduction",
        "",
        f"Recipe `{recipe}`, {epochs} epochs{schedule}. Written {date}.",
        f"Command: `{command}`" if command else "",
        "",
        "Accuracy = test accuracy after the last epoch (best epoch in parentheses), in %. "
        "Parameters with a 100-class head.",
        "",
    ]
    header = "| network | params (ours) | params (paper) | # feat. |"
    rule = "|---|---:|---:|---:|"
    for dataset in datasets:
        header += f" {dataset} ours | {dataset} paper |"
        rule += "---:|---:|"
    lines += [header, rule]
    for name in models:
        model = create_model(name, num_classes=100)
        ref = paper_reference(name)
        row = (
            f"| {name} | {count_params(model) / 1e6:.2f}M "
            f"| {'–' if ref is None or ref.params_m is None else f'{ref.params_m:.2f}M'} "
            f"| {model.num_features} |"
        )
        for dataset in datasets:
            run = outcome(output / dataset / name)
            if run.final_acc is None:
                ours = "–"
            else:
                ours = f"{100 * run.final_acc:.2f} ({100 * run.best_acc:.2f})"
                if run.epochs_done < epochs:
                    ours += f" [{run.epochs_done}/{epochs} ep]"
            column = _PAPER_COLUMN.get(dataset)
            paper = getattr(ref, column) if ref is not None and column else None
            row += f" {ours} | {'–' if paper is None else f'{paper:.2f}'} |"
        lines.append(row)
    atomic_write_text(output / "reproduction.md", "\n".join(lines) + "\n")
