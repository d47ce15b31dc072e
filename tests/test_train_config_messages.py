"""Training config: the whole text of every refusal (the argument it names, the allowed
values, the advice), the edges each bound admits, and resuming from a checkpoint.

The expected messages are written out here by hand: a refusal that names the wrong argument
or lists the wrong choices is a bug a user sees.
"""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch

from dwstft.errors import CheckpointError
from dwstft.models import list_models
from dwstft.train import TrainConfig, make_config, merge_resumed, resolve_config
from dwstft.train.checkpoint import save_checkpoint

BASE = {"model": "shufflenetv2", "dataset": "digits", "output": "unused"}
CIFAR100 = {"model": "mobilenet", "dataset": "cifar100", "output": "unused"}


def refused(config: TrainConfig, message: str) -> None:
    """``config.validate()`` raises ValueError with exactly ``message``."""
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        config.validate()


def valid(**changes) -> TrainConfig:
    return dataclasses.replace(make_config("paper", **BASE), **changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"recipe": "slow"}, "recipe must be one of paper, fast, baseline; got 'slow'"),
        ({"opt": "lamb"}, "opt must be one of sgd, momentum, adam, adamw; got 'lamb'"),
        (
            {"sched": "step"},
            "sched must be one of constant, cosine, linear, multistep; got 'step'",
        ),
        ({"augment": "mixup"}, "augment must be one of warp, crop_flip_rotate; got 'mixup'"),
        ({"amp_dtype": "float8"}, "amp_dtype must be one of float16, bfloat16; got 'float8'"),
        (
            {"compile": True, "compile_mode": "fast"},
            "compile_mode must be one of default, reduce-overhead, max-autotune, "
            "max-autotune-no-cudagraphs; got 'fast'",
        ),
        (
            {"compile_mode": "default"},
            "compile_mode ('default') applies with --compile only; add --compile or drop "
            "--compile-mode",
        ),
        ({"epochs": 0}, "epochs must be an int >= 1, got 0"),
        ({"batch_size": -4}, "batch_size must be an int >= 1, got -4"),
        ({"final_batch_size": 0}, "final_batch_size must be an int >= 1, got 0"),
        ({"validation_batch_size": 0}, "validation_batch_size must be an int >= 1, got 0"),
        ({"epochs": 4, "final_epochs": 5}, "final_epochs must be an int in [0, 4], got 5"),
        ({"seed": -1}, "seed must be an int >= 0, got -1"),
        ({"seed": True}, "seed must be an int >= 0, got True"),
        ({"crop_padding": -1}, "crop_padding must be an int >= 0, got -1"),
        ({"lr": float("nan")}, "lr must be a number >= 0.0, got nan"),
        ({"momentum": -0.5}, "momentum must be a number >= 0.0, got -0.5"),
        ({"opt_eps": -1e-8}, "opt_eps must be a number >= 0.0, got -1e-08"),
        ({"weight_decay": -0.1}, "weight_decay must be a number >= 0.0, got -0.1"),
        ({"min_lr": -0.1}, "min_lr must be a number >= 0.0, got -0.1"),
        ({"warmup_lr": -0.1}, "warmup_lr must be a number >= 0.0, got -0.1"),
        ({"lr_gamma": -0.2}, "lr_gamma must be a number >= 0.0, got -0.2"),
        (
            {"epochs": 4, "final_epochs": 1, "warmup_epochs": 5.0},
            "warmup_epochs (5.0) exceeds epochs (4); lower --warmup-epochs or raise --epochs",
        ),
        ({"warmup_epochs": -1.0}, "warmup_epochs must be a number in [0.0, 400], got -1.0"),
        (
            {"label_smoothing": 1.5},
            "label_smoothing must be a number in [0.0, 1.0], got 1.5",
        ),
        ({"max_shift": 0.6}, "max_shift must be a number in [0.0, 0.5], got 0.6"),
        (
            {"max_rotation": 180.5},
            "max_rotation must be a number in [0.0, 180.0], got 180.5",
        ),
        ({"clip_grad": -1.0}, "clip_grad must be a number >= 0.0, got -1.0"),
        ({"opt_betas": (0.9,)}, "opt_betas must be two numbers in [0, 1), got (0.9,)"),
        ({"opt_betas": (0.9, 1.0)}, "opt_betas must be two numbers in [0, 1), got (0.9, 1.0)"),
        ({"opt_betas": (0.9, 1.5)}, "opt_betas must be two numbers in [0, 1), got (0.9, 1.5)"),
        ({"lr": 0.0}, "lr must be > 0, got 0.0"),
    ],
)
def test_each_refusal_is_the_whole_message(changes, message):
    refused(valid(**changes), message)


def test_an_unregistered_model_is_refused_with_the_registered_names():
    names = list_models()
    assert "shufflenetv2" in names and "mobilenet" in names
    refused(
        valid(model="no_such_net"),
        f"model must be a registered model ({', '.join(names)}), got 'no_such_net'",
    )


def test_an_unknown_dataset_lists_the_datasets():
    refused(
        valid(dataset="mnist"),
        "dataset must be one of cifar10, cifar100, digits, moving-digits; got 'mnist'",
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"lr_milestones": (120, 60)},
            "lr_milestones must be non-decreasing ints in [0, epochs=200] (completed epochs "
            "after which the lr is multiplied by lr_gamma), got (120, 60)",
        ),
        (
            {"lr_milestones": ()},
            "sched 'multistep' needs lr_milestones (e.g. --lr-milestones 59 119)",
        ),
        (
            {"norm_mean": (math.inf,), "norm_std": (0.2,)},
            "norm_mean and norm_std must both be given, with one finite number per channel "
            "each, or both be None; got norm_mean=(inf,), norm_std=(0.2,)",
        ),
        (
            {"norm_mean": (math.nan,), "norm_std": (0.2,)},
            "norm_mean and norm_std must both be given, with one finite number per channel "
            "each, or both be None; got norm_mean=(nan,), norm_std=(0.2,)",
        ),
        (
            {"norm_mean": (True,), "norm_std": (0.2,)},
            "norm_mean and norm_std must both be given, with one finite number per channel "
            "each, or both be None; got norm_mean=(True,), norm_std=(0.2,)",
        ),
        ({"norm_mean": (0.5,), "norm_std": (-0.1,)}, "norm_std must be positive, got (-0.1,)"),
    ],
)
def test_each_baseline_refusal_is_the_whole_message(changes, message):
    refused(dataclasses.replace(make_config("baseline", **CIFAR100), **changes), message)


@pytest.mark.parametrize(
    "changes",
    [
        {"epochs": 4, "final_epochs": 4},  # final_epochs may equal epochs
        {"epochs": 4, "final_epochs": 1, "warmup_epochs": 4.0},  # warm-up may span the run
        {"label_smoothing": 1.0},
        {"max_shift": 0.5},
        {"max_rotation": 180.0},
        {"clip_grad": 0.5},
        {"opt_betas": (0.0, 0.999)},  # a zero beta is allowed
        {"amp_dtype": "bfloat16"},
        {"compile": True, "compile_mode": "default"},
    ],
)
def test_the_edges_each_bound_admits(changes):
    valid(**changes).validate()


def test_a_milestone_may_be_the_last_epoch():
    c = make_config("baseline", epochs=10, lr_milestones=(10,), **CIFAR100)
    assert c.lr_milestones == (10,)


def test_make_config_defaults_to_the_paper_recipe_and_makes_tuples_of_lists():
    assert make_config(**BASE).recipe == "paper"
    c = make_config("baseline", lr_milestones=[5, 11], opt_betas=[0.8, 0.9], **CIFAR100)
    assert type(c.lr_milestones) is tuple and c.lr_milestones == (5, 11)
    assert type(c.opt_betas) is tuple and c.opt_betas == (0.8, 0.9)


def test_unknown_fields_are_refused_by_name():
    names = sorted(f.name for f in dataclasses.fields(TrainConfig))
    with pytest.raises(ValueError) as info:
        make_config("paper", bogus=1, **BASE)
    assert str(info.value) == f"unknown config fields ['bogus']; expected a subset of {names}"
    with pytest.raises(ValueError, match=r"^config has unknown keys \['bogus'\]; expected a "):
        TrainConfig.from_dict({**make_config("paper", **BASE).to_dict(), "bogus": 1})


def test_a_resume_refusal_is_the_whole_message():
    saved = make_config("paper", epochs=8, **BASE)
    message = (
        "lr (--lr) is 0.1 but the checkpoint's run used 0.01; a resumed run keeps its "
        "settings (omit the option or start a new run)"
    )
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        merge_resumed(saved, {"lr": 0.1})


def checkpoint(path, config: dict) -> str:
    save_checkpoint(
        path,
        {
            "epoch": 1,
            "model": {"w": torch.zeros(1)},
            "optimizer": {"state": {}, "param_groups": []},
            "scaler": {},
            "best": {"test_acc": 0.0, "epoch": 0},
            "history": [],
            "config": config,
        },
    )
    return str(path)


def test_resolve_config_of_a_new_run_uses_the_named_recipe():
    assert resolve_config(None, **BASE).recipe == "paper"
    assert resolve_config("fast", **BASE) == make_config("fast", **BASE)


def test_resolve_config_of_a_resumed_run(tmp_path):
    saved = make_config("fast", epochs=6, **{**BASE, "output": str(tmp_path / "run")})
    (tmp_path / "moved").mkdir()
    last = checkpoint(tmp_path / "moved" / "last.pt", saved.to_dict())
    resumed = resolve_config(resume=last, device="cpu")
    # output defaults to the checkpoint's folder; resume and the runtime option are applied
    assert resumed == dataclasses.replace(
        saved, output=str(tmp_path / "moved"), device="cpu", resume=last
    )
    assert resolve_config(resume=last, output="elsewhere").output == "elsewhere"
    assert resolve_config("fast", resume=last).recipe == "fast"
    message = (
        "recipe (--recipe) is 'paper' but the checkpoint's run used 'fast'; a resumed run "
        "keeps its settings (omit the option or start a new run)"
    )
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        resolve_config("paper", resume=last)


def test_a_checkpoint_with_an_invalid_config_is_named_in_the_refusal(tmp_path):
    values = {**make_config("paper", **BASE).to_dict(), "epochs": 0}
    last = checkpoint(tmp_path / "last.pt", values)
    message = (
        f"checkpoint {last!r} records an invalid config (epochs must be an int >= 1, got 0); "
        "it was not written by this version of dwstft or is damaged"
    )
    with pytest.raises(CheckpointError, match="^" + re.escape(message) + "$"):
        resolve_config(resume=last)
