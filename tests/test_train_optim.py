"""The optimisers build_optimizer returns, checked by what one step does to a parameter
(hand-computed from the published update rules), not by re-reading the config."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dwstft.train import make_config
from dwstft.train.optim import build_optimizer


def one_step(opt_name: str, eps: float, lr: float = 0.1, weight_decay: float = 0.0):
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    config = make_config(
        "fast", model="stftnet_b8_f128", dataset="digits", output="o", opt=opt_name,
        opt_eps=eps, lr=lr, weight_decay=weight_decay, opt_betas=(0.9, 0.999),
    )  # fmt: skip
    optimizer = build_optimizer(model, config)
    model.weight.grad = torch.full_like(model.weight, 1e-3)
    optimizer.step()
    return model.weight.item()


@pytest.mark.parametrize("opt_name", ["adam", "adamw"])
@pytest.mark.parametrize("eps", [1e-8, 1e-3, 1e-2])
def test_the_first_adam_step_uses_the_configured_eps(opt_name, eps):
    # First Adam step: m_hat = g, v_hat = g^2, update = lr * g / (|g| + eps).
    g, lr = 1e-3, 0.1
    expected = 2.0 - lr * g / (abs(g) + eps)
    assert math.isclose(one_step(opt_name, eps, lr), expected, rel_tol=1e-6)


def test_adamw_decays_the_weight_decoupled_and_adam_through_the_gradient():
    g, lr, wd, eps = 1e-3, 0.1, 0.5, 1e-8
    # AdamW: w <- w (1 - lr wd), then the Adam update of the raw gradient.
    adamw = 2.0 * (1 - lr * wd) - lr * g / (g + eps)
    assert math.isclose(one_step("adamw", eps, lr, wd), adamw, rel_tol=1e-6)
    # Adam (L2): the gradient becomes g + wd w; the first step still moves by ~lr.
    g2 = g + wd * 2.0
    assert math.isclose(one_step("adam", eps, lr, wd), 2.0 - lr * g2 / (g2 + eps), rel_tol=1e-6)


def test_sgd_is_nesterov_and_momentum_is_classical():
    # First step with zero momentum buffer: classical = lr g; Nesterov = lr g (1 + mu).
    g, lr, mu = 1e-3, 0.1, 0.9
    assert math.isclose(one_step("momentum", 1e-8, lr), 2.0 - lr * g, rel_tol=1e-6)
    assert math.isclose(one_step("sgd", 1e-8, lr), 2.0 - lr * g * (1 + mu), rel_tol=1e-6)
