"""Model size and arithmetic: trainable parameters and multiply-accumulates.

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (it sees functional
convolutions, which thop and ptflops' default backend miss) and reported as FLOPs / 2.
Depthwise-STFT layers are counted on their ``"grouped"`` path, the paper's arithmetic
(8·C·n² for the bank + 8·C·F for the pointwise), whatever path they would run.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dwstft.models import create_model, list_models, paper_reference
from dwstft.nn.model_ops import set_impl


def count_params(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_size: tuple[int, int, int] = (3, 32, 32)) -> int:
    """Multiply-accumulates of one forward pass on one (C, H, W) image, eval mode."""
    counted = set_impl(copy.deepcopy(model), "grouped").eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, *input_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        counted(x)
    return counter.get_total_flops() // 2


@dataclass
class ModelSummary:
    """One row of ``dwstft models``."""

    name: str
    params: int
    features: int
    macs: int
    paper_params_m: float | None
    cifar10: float | None
    cifar100: float | None


def summarize(name: str, num_classes: int = 100) -> ModelSummary:
    """Size, width and MACs of a registered model at ``num_classes`` (CIFAR-100 head)."""
    model = create_model(name, num_classes=num_classes)
    ref = paper_reference(name)
    return ModelSummary(
        name=name,
        params=count_params(model),
        features=model.num_features,
        macs=count_macs(model),
        paper_params_m=ref.params_m if ref else None,
        cifar10=ref.cifar10 if ref else None,
        cifar100=ref.cifar100 if ref else None,
    )


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def models_table(names: list[str] | None = None, num_classes: int = 100) -> str:
    """Markdown table of every registered model (or ``names``)."""
    rows = [summarize(n, num_classes) for n in (names or list_models())]
    lines = [
        f"Trainable parameters with a {num_classes}-class head; MACs = FLOPs / 2 for one "
        "32×32 RGB image (torch.utils.flop_counter; convolutions and linear layers).",
        "",
        "| model | params (ours) | params (paper) | ours / paper | # feat. | MACs (M) "
        "| paper CIFAR-10 % | paper CIFAR-100 % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = None if r.paper_params_m is None else r.params / (r.paper_params_m * 1e6)
        lines.append(
            f"| {r.name} | {r.params / 1e6:.3f}M | {_fmt(r.paper_params_m, '.2f')}M "
            f"| {_fmt(ratio, '.2f')} | {r.features} | {r.macs / 1e6:.1f} "
            f"| {_fmt(r.cifar10, '.2f')} | {_fmt(r.cifar100, '.2f')} |"
        )
    return "\n".join(lines)
