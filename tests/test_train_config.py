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


# --- the baseline recipe: weiaicunzai/pytorch-cifar100, which produced Table 2's CIFAR-100
# baseline numbers (train.py, utils.py WarmUpLR, conf/global_settings.py).

CIFAR100 = {"model": "mobilenet", "dataset": "cifar100", "output": "unused"}
#: Optimiser steps per epoch there: 50,000 images in batches of 128, the last one partial.
STEPS = math.ceil(50_000 / 128)


def test_baseline_recipe_is_the_repositorys():
    c = make_config("baseline", **CIFAR100)
    assert (c.opt, c.lr, c.momentum, c.weight_decay, c.decay_all_params) == (
        "momentum",
        0.1,
        0.9,
        5e-4,
        True,
    )
    assert (c.epochs, c.batch_size, c.drop_last, c.label_smoothing) == (200, 128, False, 0.0)
    assert batch_sizes(c) == [128] * 200
    assert (c.sched, c.lr_gamma, c.warmup_epochs, c.warmup_lr) == ("multistep", 0.2, 1.0, 0.0)
    assert (c.augment, c.crop_padding, c.max_rotation) == ("crop_flip_rotate", 4, 15.0)
    assert c.norm_mean == (0.5070751592371323, 0.48654887331495095, 0.4409178433670343)
    assert c.norm_std == (0.2673342858792401, 0.2564384629170883, 0.27615047132568404)
    # its constants are CIFAR-100's; elsewhere the split's own statistics are used
    assert make_config("baseline", **{**CIFAR100, "dataset": "cifar10"}).norm_mean is None
    # on 8×8 digits the crop pads 1 pixel, an eighth of the side as 4 of 32
    digits = make_config("baseline", **{**CIFAR100, "dataset": "digits"})
    assert (digits.crop_padding, digits.norm_mean) == (1, None)
    assert (
        make_config("baseline", crop_padding=3, **{**CIFAR100, "dataset": "digits"}).crop_padding
        == 3
    )


def test_baseline_lr_per_epoch_by_hand():
    # train.py calls MultiStepLR(milestones=[60, 120, 160], gamma=0.2).step(epoch) before
    # its 1-based epoch `epoch` (from epoch 2 on): bisect_right puts 0.1·0.2 into effect
    # for its epoch 60, i.e. our 0-based epoch 59, and so on.
    c = make_config("baseline", **CIFAR100)
    expected = {1: 0.1, 58: 0.1, 59: 0.02, 60: 0.02, 118: 0.02, 119: 0.004, 120: 0.004}
    expected |= {158: 0.004, 159: 0.0008, 160: 0.0008, 199: 0.0008}
    for epoch, lr in expected.items():
        for step in (0, STEPS // 2, STEPS - 1):
            assert lr_at(c, epoch + step / STEPS) == pytest.approx(lr, rel=1e-12), epoch
    assert c.lr_milestones == (59, 119, 159)


def test_baseline_warmup_per_step_by_hand():
    # WarmUpLR sets base_lr · i / (iters + 1e-8) after the i-th step of the first epoch
    # (iters = 391), so step s (0-based) runs at 0.1 · s / 391: the first at 0, the last
    # at 0.1 · 390/391. The 1e-8 changes these by a relative 3e-11.
    c = make_config("baseline", **CIFAR100)
    assert lr_at(c, 0.0) == 0.0
    assert lr_at(c, 1 / STEPS) == pytest.approx(0.1 / 391, rel=1e-12)
    assert lr_at(c, 390 / STEPS) == pytest.approx(0.1 * 390 / 391, rel=1e-12)
    for s in range(STEPS):
        assert lr_at(c, s / STEPS) == pytest.approx(0.1 * s / 391, rel=1e-12)
    assert lr_at(c, 1.0) == 0.1  # epoch 2 (1-based): MultiStepLR.step(2) restores 0.1


def test_baseline_schedule_matches_torch_schedulers_driven_like_the_repository():
    # The repository's loop with torch's own schedulers, independent of lr_at: MultiStepLR,
    # then a linear warm-up (its WarmUpLR) stepped after every step of epoch 1 only, and
    # MultiStepLR.step(epoch) before every later epoch.
    c = make_config("baseline", **CIFAR100)
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1, momentum=0.9, weight_decay=5e-4)
    milestones = torch.optim.lr_scheduler.MultiStepLR(optimizer, [60, 120, 160], gamma=0.2)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: i / (STEPS + 1e-8))
    with pytest.warns(UserWarning):
        for epoch in range(1, 201):
            if epoch > 1:
                milestones.step(epoch)
            steps = range(STEPS) if epoch == 1 else (0, STEPS - 1)
            for step in steps:
                theirs = optimizer.param_groups[0]["lr"]
                assert lr_at(c, epoch - 1 + step / STEPS) == pytest.approx(theirs, rel=1e-9)
                if epoch == 1:
                    optimizer.step()
                    warmup.step()


def test_baseline_decays_every_parameter_with_classical_momentum():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    sgd = build_optimizer(model, make_config("baseline", **CIFAR100))
    assert isinstance(sgd, torch.optim.SGD) and len(sgd.param_groups) == 1
    group = sgd.param_groups[0]
    assert not group["nesterov"] and group["momentum"] == 0.9 and group["dampening"] == 0
    assert group["weight_decay"] == 5e-4 and len(group["params"]) == 4  # biases, BN too


@pytest.mark.parametrize(
    ("epochs", "milestones"), [(200, (59, 119, 159)), (100, (29, 59, 79)), (10, (2, 5, 7))]
)
def test_baseline_milestones_scale_with_epochs(epochs, milestones):
    # round(M · epochs / 200) - 1 for M in 60, 120, 160 (halves up)
    assert make_config("baseline", epochs=epochs, **CIFAR100).lr_milestones == milestones


def test_baseline_values_can_be_overridden():
    c = make_config(
        "baseline",
        lr_milestones=(60, 120, 160),
        opt="sgd",
        decay_all_params=False,
        augment="warp",
        norm_mean=(0.5, 0.5, 0.5),
        norm_std=(0.25, 0.25, 0.25),
        **CIFAR100,
    )
    assert lr_at(c, 59.0) == 0.1 and lr_at(c, 60.0) == pytest.approx(0.02)
    assert (c.opt, c.decay_all_params, c.augment, c.norm_mean) == (
        "sgd",
        False,
        "warp",
        (0.5,) * 3,
    )


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"lr_milestones": (120, 60)}, "lr_milestones must be non-decreasing ints"),
        ({"lr_milestones": (250,)}, r"in \[0, epochs=200\]"),
        ({"lr_milestones": ()}, "sched 'multistep' needs lr_milestones"),
        ({"augment": "mixup"}, "augment must be one of"),
        ({"crop_padding": -1}, "crop_padding must be an int >= 0"),
        ({"dataset": "cifar10", "norm_mean": (0.5,) * 3}, "norm_mean and norm_std must both"),
        ({"norm_mean": (0.5,) * 3, "norm_std": (0.2,) * 2}, "one finite number per channel"),
        ({"norm_mean": (0.5,), "norm_std": (0.0,)}, "norm_std must be positive"),
        ({"lr_gamma": -0.2}, "lr_gamma must be a number"),
    ],
)
def test_invalid_baseline_values_name_the_argument(override, match):
    with pytest.raises(ValueError, match=match):
        make_config("baseline", **{**CIFAR100, **override})


def test_baseline_config_round_trips_and_resumes():
    c = make_config("baseline", epochs=20, **CIFAR100)
    d = c.to_dict()
    assert d["lr_milestones"] == [5, 11, 15] and isinstance(d["norm_mean"], list)
    assert TrainConfig.from_dict(d) == c
    assert merge_resumed(c, {"lr_milestones": [5, 11, 15], "device": "cpu"}).device == "cpu"
    with pytest.raises(ValueError, match=r"lr_milestones \(--lr-milestones\)"):
        merge_resumed(c, {"lr_milestones": (1, 2)})
