"""The optimisers build_optimizer returns, checked by what one step does to a parameter
(hand-computed from the published update rules), not by re-reading the config."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from dwstft.train import make_config
from dwstft.train.optim import build_optimizer, lr_at, set_lr


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


@pytest.mark.parametrize("opt", ["adam", "adamw"])
def test_the_configured_betas_reach_the_optimizer(opt):
    config = make_config(
        "fast", model="stftnet_b8_f128", dataset="digits", opt=opt, opt_betas=(0.5, 0.6), output="o"
    )
    optimizer = build_optimizer(nn.Linear(2, 2), config)
    assert optimizer.defaults["betas"] == (0.5, 0.6)


def test_an_unknown_optimizer_is_named():
    config = dataclasses.replace(
        make_config("fast", model="stftnet_b8_f128", dataset="digits", output="o"), opt="bogus"
    )
    with pytest.raises(ValueError, match="opt must be one of sgd, momentum, adam, adamw; got"):
        build_optimizer(nn.Linear(2, 2), config)


def schedule(**fields):
    base = make_config("fast", model="stftnet_b8_f128", dataset="digits", output="o")
    values = {"warmup_lr": 0.01, "lr": 0.1, "min_lr": 0.001, "sched": "cosine", **fields}
    return dataclasses.replace(base, **values)


def test_warmup_runs_from_warmup_lr_and_decay_ends_at_min_lr():
    config = schedule(warmup_epochs=2, epochs=10)
    assert lr_at(config, 1.0) == pytest.approx(0.01 + (0.1 - 0.01) / 2)
    assert lr_at(config, 6.0) == pytest.approx(0.001 + (0.1 - 0.001) / 2)  # cosine midpoint
    assert lr_at(config, 10.0) == pytest.approx(0.001)
    assert lr_at(config, 12.0) == pytest.approx(0.001)  # past the end: stays at min_lr
    linear = schedule(warmup_epochs=2, epochs=3, sched="linear")
    assert lr_at(linear, 2.5) == pytest.approx(0.001 + (0.1 - 0.001) / 2)


def test_no_decay_span_left_after_warmup_means_min_lr():
    assert lr_at(schedule(warmup_epochs=2, epochs=2), 2.0) == pytest.approx(0.001)


def test_an_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="sched must be one of constant, cosine, linear, "):
        lr_at(schedule(sched="bogus", warmup_epochs=0, epochs=4), 1.0)


def test_set_lr_changes_the_step_every_group_takes():
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([{"params": [a]}, {"params": [b]}], lr=1.0)
    set_lr(optimizer, 0.25)
    (a.sum() + 2 * b.sum()).backward()
    optimizer.step()
    torch.testing.assert_close(a.detach(), torch.full((2,), 0.75))
    torch.testing.assert_close(b.detach(), torch.full((2,), 0.5))
