"""Training and evaluation: ``dwstft train`` / ``dwstft eval`` as a Python API.

``make_config(recipe, model=..., dataset=..., output=..., **overrides)`` resolves a recipe
("paper" or "fast") into a :class:`TrainConfig`; ``train(config)`` runs it and writes the
run folder; ``evaluate_checkpoint(path)`` scores saved weights on the test split.
"""

from dwstft.train.checkpoint import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)
from dwstft.train.config import (
    RECIPES,
    Recipe,
    TrainConfig,
    make_config,
    merge_resumed,
    resolve_config,
)
from dwstft.train.evaluate import evaluate, evaluate_checkpoint
from dwstft.train.loop import (
    NonFiniteLossError,
    RunSetupError,
    TrainingInterrupted,
    TrainResult,
    train,
)
from dwstft.train.metrics import COLUMNS, read_history
from dwstft.train.optim import build_optimizer, lr_at

__all__ = [
    "COLUMNS",
    "RECIPES",
    "NonFiniteLossError",
    "Recipe",
    "RunSetupError",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "build_optimizer",
    "evaluate",
    "evaluate_checkpoint",
    "load_checkpoint",
    "load_weights",
    "lr_at",
    "make_config",
    "merge_resumed",
    "read_history",
    "resolve_config",
    "save_checkpoint",
    "save_weights",
    "train",
]
