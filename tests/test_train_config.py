"""Training config: recipes, the paper's batch growth, validation, the lr schedule."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from dwstft.train import RECIPES, TrainConfig, lr_at, make_config, merge_resumed
from dwstft.train.optim import build_optimizer, param_groups

BASE = {"model": "shufflenetv2", "dataset": "digits", "output": "unused"}


def batch_sizes(config: TrainConfig) -> list[int]:
    return [config.batch_size_at(e) for e in range(config.epochs)]


def test_paper_recipe_is_the_published_one():
    c = make_config("paper", **BASE)
    assert (c.opt, c.lr, c.opt_eps, c.sched, c.weight_decay) == ("adam", 0.01, 1e-7, "constant", 0)
    assert (c.label_smoothing, c.warmup_epochs) == (0.0, 0.0)
    assert c.epochs == 400 and batch_sizes(c) == [64] * 300 + [128] * 100


@pytest.mark.parametrize(
    ("epochs", "small", "large"), [(400, 300, 100), (15, 11, 4), (8, 6, 2), (2, 1, 1), (1, 1, 0)]
)
def test_paper_batch_growth_keeps_three_to_one(epochs, small, large):
    c = make_config("paper", epochs=epochs, **BASE)
    assert batch_sizes(c) == [64] * small + [128] * large
    assert all(lr_at(c, t) == 0.01 for t in (0.0, epochs / 2, float(epochs)))


def test_paper_growth_follows_batch_size_and_can_be_overridden():
    assert batch_sizes(make_config("paper", epochs=4, batch_size=32, **BASE)) == [32] * 3 + [64]
    c = make_config("paper", epochs=4, final_batch_size=256, final_epochs=2, **BASE)
    assert batch_sizes(c) == [64, 64, 256, 256]


def test_fast_recipe_defaults_and_overrides():
    c = make_config("fast", **BASE)
    assert c.opt == "adamw" and c.sched == "cosine" and c.label_smoothing == 0.1
    assert c.weight_decay > 0 and c.warmup_epochs > 0 and len(set(batch_sizes(c))) == 1
    c = make_config("fast", lr=0.05, opt="sgd", epochs=5, warmup_epochs=1, **BASE)
    assert (c.lr, c.opt, c.epochs) == (0.05, "sgd", 5)


def test_every_recipe_sets_only_real_fields():
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for recipe in RECIPES.values():
        assert set(recipe.defaults) <= names


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"model": "no_such_net"}, "model must be a registered model"),
        ({"dataset": "mnist"}, "dataset must be one of"),
        ({"epochs": 0}, "epochs must be an int >= 1"),
        ({"batch_size": -4}, "batch_size must be an int >= 1"),
        ({"lr": float("nan")}, "lr must be a number"),
        ({"opt": "lamb"}, "opt must be one of"),
        ({"sched": "step"}, "sched must be one of"),
        ({"label_smoothing": 1.5}, "label_smoothing must be a number in"),
        ({"final_epochs": 9, "epochs": 4}, "final_epochs must be an int in"),
        ({"warmup_epochs": 5.0, "epochs": 4}, r"warmup_epochs \(5\.0\) exceeds epochs \(4\)"),
        ({"warmup_epochs": -1.0}, "warmup_epochs must be a number in"),
    ],
)
def test_invalid_values_name_the_argument(override, match):
    with pytest.raises(ValueError, match=match):
        make_config("paper", **{**BASE, **override})


def test_unknown_recipe_and_missing_required():
    with pytest.raises(ValueError, match="recipe must be one of"):
        make_config("slow", **BASE)
    with pytest.raises(ValueError, match="argument output is required"):
        make_config("paper", model="shufflenetv2", dataset="digits")


def test_config_round_trips_through_plain_dict():
    c = make_config("fast", clip_grad=1.0, **BASE)
    d = c.to_dict()
    assert all(isinstance(v, (str, int, float, bool, list, type(None))) for v in d.values())
    assert TrainConfig.from_dict(d) == c


def test_resume_keeps_saved_settings():
    saved = make_config("paper", epochs=8, **BASE)
    merged = merge_resumed(saved, {"device": "cpu", "output": "elsewhere", "lr": None})
    assert merged.device == "cpu" and merged.output == "elsewhere" and merged.lr == saved.lr
    with pytest.raises(ValueError, match=r"lr \(--lr\) is 0.1 but the checkpoint's run used"):
        merge_resumed(saved, {"lr": 0.1})
    assert merge_resumed(saved, {"epochs": 8, "opt_betas": (0.9, 0.999)}) == saved


def test_lr_schedule_warmup_then_cosine_to_min():
    c = make_config("fast", epochs=10, lr=0.4, warmup_epochs=2.0, warmup_lr=0.0, **BASE)
    assert lr_at(c, 0.0) == 0.0 and lr_at(c, 1.0) == pytest.approx(0.2)
    assert lr_at(c, 2.0) == pytest.approx(0.4) and lr_at(c, 10.0) == pytest.approx(0.0)
    assert lr_at(c, 6.0) == pytest.approx(0.2)  # cosine midpoint
    lin = make_config("fast", epochs=10, lr=0.4, sched="linear", warmup_epochs=0.0, **BASE)
    assert lr_at(lin, 5.0) == pytest.approx(0.2)
    values = [lr_at(c, t / 10) for t in range(101)]
    assert all(math.isfinite(v) and v >= 0 for v in values)


def test_weight_decay_skips_biases_and_norms():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(2, 1, 5, 5))
    decay, no_decay = param_groups(model, 5e-4)
    assert {tuple(p.shape) for p in decay["params"]} == {(4, 1, 3, 3), (2, 36)}
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0
    for opt, cls in (("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam)):
        optimizer = build_optimizer(model, make_config("fast", opt=opt, **BASE))
        assert isinstance(optimizer, cls)
    sgd = build_optimizer(model, make_config("fast", opt="sgd", **BASE))
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["weight_decay"] == 0.05
    assert sgd.param_groups[1]["weight_decay"] == 0.0


@pytest.mark.parametrize(("epochs", "warmup"), [(1, 0.25), (4, 1.0), (15, 2.0), (60, 2.0)])
def test_the_fast_recipe_warm_up_is_capped_at_a_quarter_of_a_short_run(epochs, warmup):
    config = make_config(
        "fast", model="stftnet_b8_f128", dataset="digits", output="o", epochs=epochs
    )
    assert config.warmup_epochs == warmup


def test_train_help_marks_required_options_and_shows_each_recipes_defaults(capsys):
    from dwstft.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.count("(required for a new run") == 3
    for name, recipe in RECIPES.items():
        assert f"{name} {recipe.defaults['lr']}" in text
