"""Optimiser construction and the learning-rate schedule.

The schedule is a pure function of the fractional epoch (:func:`lr_at`), evaluated before
every step, so it needs no state of its own: a resumed run recomputes it from the config
and the epoch. It is defined in epochs, not steps, because the paper's batch growth changes
the number of steps per epoch.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dwstft.train.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float, decay_all: bool = False) -> list[dict]:
    """Two groups: weights with >= 2 dims get ``weight_decay``, biases and norm parameters 0;
    with ``decay_all`` one group, every trainable parameter with ``weight_decay`` (what
    ``torch.optim.SGD(model.parameters(), weight_decay=...)`` does)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if decay_all:
        return [{"params": trainable, "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for p in trainable:
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``config.opt``.

    ``sgd``: SGD with Nesterov momentum (timm's convention); ``momentum``: SGD with classical
    momentum; ``adam``: Adam with L2 weight decay; ``adamw``: AdamW (decoupled decay).

    On CUDA the fused implementations are used (one kernel for the whole update instead of
    a few per parameter group: the step is launch-bound there); elsewhere PyTorch's
    default (foreach).
    """
    groups = param_groups(model, config.weight_decay, config.decay_all_params)
    lr = config.lr
    fused = {"fused": True} if next(model.parameters()).is_cuda else {}
    if config.opt in ("sgd", "momentum"):
        nesterov = config.opt == "sgd"
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=nesterov, **fused)
    betas = tuple(config.opt_betas)
    if config.opt == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=config.opt_eps, **fused)
    if config.opt == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=config.opt_eps, **fused)
    raise ValueError(f"opt must be one of sgd, momentum, adam, adamw; got {config.opt!r}")


def lr_at(config: TrainConfig, t: float) -> float:
    """Learning rate at fractional epoch ``t`` in [0, epochs] (epoch e, step s of S: e + s/S).

    Linear warm-up from ``warmup_lr`` to ``lr`` over ``warmup_epochs`` (so with a warm-up
    of one epoch from 0, step s of the first epoch runs at ``lr * s / S``: the first at 0),
    then ``constant``, ``cosine`` or ``linear`` decay to ``min_lr`` at ``epochs``, or
    ``multistep``: ``lr * lr_gamma ** k`` with k the number of ``lr_milestones`` <= t (as
    ``torch.optim.lr_scheduler.MultiStepLR``'s closed form), constant within an epoch.
    """
    warmup = config.warmup_epochs
    if t < warmup:
        return config.warmup_lr + (config.lr - config.warmup_lr) * t / warmup
    if config.sched == "constant":
        return config.lr
    if config.sched == "multistep":
        passed = sum(1 for milestone in config.lr_milestones if milestone <= t)
        return config.lr * config.lr_gamma**passed
    span = config.epochs - warmup
    progress = min(max((t - warmup) / span, 0.0), 1.0) if span > 0 else 1.0
    if config.sched == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif config.sched == "linear":
        factor = 1.0 - progress
    else:
        raise ValueError(
            f"sched must be one of constant, cosine, linear, multistep; got {config.sched!r}"
        )
    return config.min_lr + (config.lr - config.min_lr) * factor


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate to ``lr``."""
    for group in optimizer.param_groups:
        group["lr"] = lr
