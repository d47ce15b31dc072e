"""``dwstft reproduce table2``: train every Table 2 row and set our numbers beside the paper's.

Each (dataset, model) run lives in ``OUTPUT/<dataset>/<model>/`` (a normal ``dwstft train``
run folder). The harness is resumable run by run: a finished run (``metrics.jsonl`` holds
every epoch) is read, not redone; an interrupted one continues from its ``last.pt``; the
rest start fresh. ``OUTPUT/reproduction.md`` is rewritten after every run, so a partial
sweep still leaves a readable table.

Recipes: with ``recipe="auto"`` every row trains with the recipe its paper number came from
(:mod:`dwstft.train.table2`: the baselines with ``baseline``, STFTNet and the ReLPU network
with ``paper``); any other name forces one recipe on every row. The report reads the
recipe and the epochs of each row from its run's ``config.json`` and says, per row,
whether the comparison is like for like.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from dwstft._atomic import atomic_write_text
from dwstft.errors import RunFolderError
from dwstft.models import create_model, paper_reference
from dwstft.models.complexity import count_macs, count_params
from dwstft.train.config import RECIPES, TrainConfig, make_config, resolve_config
from dwstft.train.loop import train
from dwstft.train.metrics import read_history
from dwstft.train.table2 import SOURCE_RECIPES, TABLE2_MODELS, recipe_for

DATASETS = ("cifar10", "cifar100", "digits")
#: Known gaps between a row's network and the network behind the paper's number.
_NETWORK_NOTES = {
    ("shufflenet", "cifar100"): "paper's number is g = 3 (shufflenet_g3)",
}
#: Relative parameter gap to the paper beyond which a row is flagged.
PARAMS_TOLERANCE = 0.05


@dataclass
class RunOutcome:
    """What one run folder recorded: accuracies (fractions, ``None`` before the first epoch),
    epochs done, and its ``config.json`` (``None`` if the run never started)."""

    final_acc: float | None
    best_acc: float | None
    epochs_done: int
    config: TrainConfig | None


def run_state(run_dir: Path, epochs: int) -> str:
    """``"done"`` (all ``epochs`` recorded), ``"partial"`` (a ``last.pt`` to resume) or
    ``"new"``."""
    if (run_dir / "metrics.jsonl").exists() and len(read_history(run_dir)) >= epochs:
        return "done"
    return "partial" if (run_dir / "last.pt").exists() else "new"


def outcome(run_dir: Path) -> RunOutcome:
    """What ``run_dir`` has recorded so far."""
    config_path = run_dir / "config.json"
    config = None
    if config_path.exists():
        config = TrainConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    history = read_history(run_dir) if (run_dir / "metrics.jsonl").exists() else []
    if not history:
        return RunOutcome(None, None, 0, config)
    best = max(r["test_acc"] for r in history)
    return RunOutcome(history[-1]["test_acc"], best, len(history), config)


def run_table2(
    output: str | Path,
    datasets: tuple[str, ...] = ("cifar10", "cifar100"),
    models: tuple[str, ...] = TABLE2_MODELS,
    recipe: str = "auto",
    epochs: int | None = None,
    data_dir: str | None = None,
    device: str | None = None,
    seed: int = 0,
    command: str = "",
) -> Path:
    """Train what is not yet trained and write ``output/reproduction.md``; returns its path.

    ``recipe`` is ``"auto"`` (each row's source recipe, :func:`recipe_for`) or a recipe name
    for every row; ``epochs`` defaults to each row's recipe's. Other hyper-parameters are
    the recipe's.

    Raises:
        ValueError: an unknown dataset, model or recipe, or an empty selection.
        RunFolderError: a row's folder holds a run with another recipe.
    """
    for name, values, choices in (("datasets", datasets, DATASETS), ("models", models, None)):
        if not values:
            raise ValueError(f"{name} must name at least one entry, got {values!r}")
        if choices and set(values) - set(choices):
            raise ValueError(f"{name} must be among {choices}, got {values!r}")
    for name in models:
        create_model(name)  # fail fast on an unknown name, before hours of training
    output = Path(output)
    plans = {
        (dataset, name): make_config(
            recipe_for(name, recipe),
            model=name,
            dataset=dataset,
            output=str(output / dataset / name),
            epochs=epochs,
            data_dir=data_dir,
            device=device,
            seed=seed,
        )
        for dataset in datasets
        for name in models
    }
    for config in plans.values():
        _check_folder_recipe(Path(config.output), config.recipe)
    sizes = {name: model_size(name) for name in models}
    for (dataset, name), config in plans.items():
        run_dir = Path(config.output)
        state = run_state(run_dir, config.epochs)
        print(f"[reproduce] {dataset} / {name} ({config.recipe}): {state}", flush=True)
        try:
            if state == "partial":
                last = str(run_dir / "last.pt")
                train(resolve_config(resume=last, device=device, data_dir=data_dir))
            elif state == "new":
                train(config)
        finally:
            write_report(output, datasets, models, command, sizes)
    return output / "reproduction.md"


def _check_folder_recipe(run_dir: Path, recipe: str) -> None:
    saved = outcome(run_dir).config
    if saved is not None and saved.recipe != recipe:
        raise RunFolderError(
            f"{run_dir} holds a run with recipe {saved.recipe!r}, not {recipe!r}; pass "
            "--recipe with the recipe it was started with, another --output, or remove it"
        )


def model_size(name: str) -> tuple[int, int]:
    """(trainable parameters, MACs on one 32×32 RGB image) of ``name`` with 100 classes."""
    model = create_model(name, num_classes=100)
    return count_params(model), count_macs(model)


def write_report(
    output: Path,
    datasets: tuple[str, ...],
    models: tuple[str, ...],
    command: str = "",
    sizes: dict[str, tuple[int, int]] | None = None,
) -> None:
    """(Re)write ``output/reproduction.md`` from the run folders: per dataset one table with,
    per row, the paper's accuracy beside ours, parameters and MACs (``sizes``, computed
    when not given), the recipe and epochs read from the run's ``config.json``, and whether
    the comparison is like for like."""
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Table 2 reproduction",
        "",
        f"Written {date}." + (f" Command: `{command}`" if command else ""),
        "",
        "Accuracy = test accuracy after the last epoch (best epoch in parentheses), in %. "
        "Parameters with a 100-class head; MACs for one 32×32 RGB image. Recipe and epochs "
        "are read from each run's config.json (epochs done / epochs configured).",
        "",
        "Where the paper's numbers come from: CIFAR-100 baselines, weiaicunzai/pytorch-cifar100 "
        "(recipe `baseline`, 200 epochs); STFTNet and ReLPU rows, the paper's own training "
        "(recipe `paper`, 400 epochs); CIFAR-10 baselines, not known. A row is like for like "
        "when it trained the network behind the paper's number, with that number's recipe, "
        "for all its epochs.",
    ]
    if sizes is None:
        sizes = {name: model_size(name) for name in models}
    recipes_seen: dict[str, TrainConfig] = {}
    for dataset in datasets:
        lines += [
            "",
            f"## {dataset}",
            "",
            "| network | params (ours) | params (paper) | MACs (M) | recipe | epochs "
            "| ours % | paper % | like for like? |",
            "|---|---:|---:|---:|---|---:|---:|---:|---|",
        ]
        for name in models:
            run = outcome(output / dataset / name)
            if run.config is not None:
                recipes_seen.setdefault(run.config.recipe, run.config)
            lines.append(_row(name, dataset, run, sizes[name]))
    if recipes_seen:
        lines += ["", "## Recipes used (from the runs' config.json)", ""]
        lines += [f"- {_describe(config)}" for _, config in sorted(recipes_seen.items())]
    atomic_write_text(output / "reproduction.md", "\n".join(lines) + "\n")


def _row(name: str, dataset: str, run: RunOutcome, size: tuple[int, int]) -> str:
    params, macs = size
    ref = paper_reference(name)
    paper_params = None if ref is None else ref.params_m
    paper_acc = getattr(ref, dataset, None) if ref is not None else None
    config = run.config
    ours = "–"
    if run.final_acc is not None:
        ours = f"{100 * run.final_acc:.2f} ({100 * run.best_acc:.2f})"
    recipe = "–" if config is None else f"`{config.recipe}`"
    epochs = "–" if config is None else f"{run.epochs_done}/{config.epochs}"
    verdict = _like_for_like(name, dataset, run, params, paper_params, paper_acc)
    return (
        f"| {name} | {params / 1e6:.2f}M | "
        f"{'–' if paper_params is None else f'{paper_params:.2f}M'} | {macs / 1e6:.1f} | "
        f"{recipe} | {epochs} | {ours} | "
        f"{'–' if paper_acc is None else f'{paper_acc:.2f}'} | {verdict} |"
    )


def _like_for_like(
    name: str,
    dataset: str,
    run: RunOutcome,
    params: int,
    paper_params: float | None,
    paper_acc: float | None,
) -> str:
    """ "yes", or the reasons the row's two numbers are not the same experiment."""
    if paper_acc is None:
        return "no paper number"
    if run.config is None:
        return "not run yet"
    reasons = []
    source = SOURCE_RECIPES.get(name, "paper")
    if dataset == "cifar10" and name in SOURCE_RECIPES:
        reasons.append("paper's source unknown")
    elif run.config.recipe != source:
        reasons.append(f"paper's number: `{source}` recipe")
    full = RECIPES[source].defaults["epochs"]
    if run.epochs_done < full:
        reasons.append(f"{run.epochs_done} of {full} epochs")
    if (name, dataset) in _NETWORK_NOTES:
        reasons.append(_NETWORK_NOTES[(name, dataset)])
    if paper_params is not None and abs(params / (paper_params * 1e6) - 1) > PARAMS_TOLERANCE:
        reasons.append(f"params {params / (paper_params * 1e6):.2f}× paper's")
    return "yes" if not reasons else "no: " + "; ".join(reasons)


def _describe(config: TrainConfig) -> str:
    """One line: what a run's recipe did, from its config."""
    sched = config.sched
    if sched == "multistep":
        after = ", ".join(str(m) for m in config.lr_milestones)
        sched = f"×{config.lr_gamma:g} after epochs {after}"
    if config.warmup_epochs:
        sched += f", {config.warmup_epochs:g} warm-up epoch(s)"
    batch = f"batch {config.batch_size}"
    if config.final_epochs:
        batch += f", {config.final_batch_size} for the last {config.final_epochs} epochs"
    decay = ""
    if config.weight_decay:
        scope = "all parameters" if config.decay_all_params else "weights"
        decay = f", weight decay {config.weight_decay:g} on {scope}"
    return (
        f"`{config.recipe}`: opt {config.opt}, lr {config.lr:g} ({sched}), {batch}{decay}, "
        f"augmentation {config.augment} (rotation ±{config.max_rotation:g}°), "
        f"{config.epochs} epochs"
    )
