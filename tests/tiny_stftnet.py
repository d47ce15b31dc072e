"""A 2-block STFTNet for tests that need a whole network in milliseconds, and BatchNorm
statistics that make its eval-mode logits realistic."""

from __future__ import annotations

import torch
from torch import nn

from dwstft.models.stftnet import stftnet


def tiny(num_classes: int = 10, in_chans: int = 3, **kwargs: object) -> nn.Module:
    """A 2-block STFTNet: every layer kind of the presets, built in milliseconds."""
    return stftnet(4, 8, num_classes, in_chans, stage_blocks=(1, 1), **kwargs)


def calibrated(model: nn.Module, in_chans: int = 3, seed: int = 0) -> nn.Module:
    """Give BatchNorm the running statistics of its inputs (as training would), so that
    eval-mode logits have a realistic scale; returns the model in eval mode."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(16, in_chans, 32, 32))
    return model.eval()
