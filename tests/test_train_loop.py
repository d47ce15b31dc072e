"""The training loop end to end on digits with a tiny model: run folder, resume, Ctrl-C,
non-finite loss, evaluation, and the CLI's handling of bad input."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

from dwstft.cli import main
from dwstft.models import create_model, list_models, registry
from dwstft.models.base import ImageClassifier
from dwstft.train import (
    COLUMNS,
    NonFiniteLossError,
    TrainingInterrupted,
    load_checkpoint,
    make_config,
    read_history,
    resolve_config,
    train,
)

TINY = "tiny_train_test_net"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DIGITS_TRAIN_STEPS_64 = 1437 // 64  # steps per epoch at batch 64 with drop_last


class TinyNet(ImageClassifier):
    """conv 3×3 → BN → ReLU → GAP → linear; ``on_forward(model, logits)`` lets a test
    tamper with a training forward (raise, return NaN, corrupt the model) at a chosen call."""

    on_forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None

    def __init__(self, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__(16, num_classes)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        if self.training and TinyNet.on_forward is not None:
            logits = TinyNet.on_forward(self, logits)
        return logits


@pytest.fixture(scope="module", autouse=True)
def tiny_model_registered():
    """Register the tiny model for this module only, so that tests elsewhere that iterate
    over ``list_models()`` never meet it."""
    assert TINY not in list_models()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._MODELS, TINY, TinyNet)
        yield


def tiny_config(output: Path, **overrides):
    values = {"model": TINY, "dataset": "digits", "output": str(output), "device": "cpu"}
    return make_config(overrides.pop("recipe", "paper"), **{**values, "epochs": 3, **overrides})


def after_calls(n: int, action: Callable[[nn.Module, torch.Tensor], torch.Tensor]):
    """A hook that passes the first ``n`` training forwards through, then applies ``action``."""
    calls = {"n": 0}

    def hook(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return action(model, logits) if calls["n"] > n else logits

    return hook


def interrupt(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    raise KeyboardInterrupt


def poison_running_stats(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """Leave the training loss finite but make evaluation (running BN stats) NaN."""
    bn = model.features[1]
    bn.running_mean = torch.full_like(bn.running_mean, math.nan)  # a new tensor: autograd-safe
    return logits


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A complete 3-epoch run (paper recipe: batch 64, 64, then 128)."""
    out = tmp_path_factory.mktemp("run")
    return train(tiny_config(out))


def test_run_folder_has_every_file(finished_run):
    run = finished_run.run_dir
    names = {"config.json", "metrics.jsonl", "summary.csv", "curves.png", "best.safetensors"}
    assert names | {"last.pt"} <= {p.name for p in run.iterdir()}
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    assert (run / "curves.png").read_bytes()[:8] == PNG_SIGNATURE
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == TINY and config["epochs"] == 3 and config["lr"] == 0.01


def test_metrics_have_sane_values(finished_run):
    records = read_history(finished_run.run_dir)
    assert [r["epoch"] for r in records] == [1, 2, 3] and records == finished_run.history
    for r in records:
        assert set(COLUMNS) <= set(r)
        assert 0 <= r["train_acc"] <= 1 and 0 <= r["test_acc"] <= 1
        assert 0 < r["train_loss"] < 10 and 0 < r["test_loss"] < 100
        assert r["lr"] == 0.01 and r["seconds"] > 0 and r["images_per_s"] > 0
        assert math.isclose(r["test_acc"] * 360, round(r["test_acc"] * 360), abs_tol=1e-9)
    assert [r["batch_size"] for r in records] == [64, 64, 128]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    csv_lines = (finished_run.run_dir / "summary.csv").read_text().splitlines()
    assert csv_lines[0].split(",") == list(COLUMNS) and len(csv_lines) == 4


def test_best_weights_match_the_model(finished_run):
    path = finished_run.run_dir / "best.safetensors"
    with safe_open(str(path), framework="pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    assert keys == set(create_model(TINY, num_classes=10, in_chans=1).state_dict())
    assert meta["model"] == TINY and int(meta["epoch"]) == finished_run.best_epoch
    assert float(meta["test_acc"]) == finished_run.best_acc
    assert finished_run.best_acc == max(r["test_acc"] for r in finished_run.history)


def test_last_checkpoint_is_resumable_state(finished_run):
    state = load_checkpoint(finished_run.run_dir / "last.pt")
    assert state["epoch"] == 3 and state["history"] == finished_run.history
    assert state["optimizer"]["state"] and state["config"]["model"] == TINY


@pytest.mark.parametrize("name", ["best.safetensors", "last.pt"])
def test_eval_command_reproduces_logged_accuracy(finished_run, name, capsys):
    path = finished_run.run_dir / name
    assert main(["eval", "--checkpoint", str(path), "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    epoch = finished_run.best_epoch if name == "best.safetensors" else 3
    logged = finished_run.history[epoch - 1]
    assert result["epoch"] == epoch and result["count"] == 360
    assert result["test_acc"] == logged["test_acc"]
    assert result["test_loss"] == pytest.approx(logged["test_loss"], abs=1e-6)


def test_eval_rejects_a_mismatched_model(finished_run, capsys):
    path = finished_run.run_dir / "best.safetensors"
    assert main(["eval", "--checkpoint", str(path), "--model", "shufflenetv2"]) == 2
    assert "trained with" in capsys.readouterr().err


def test_resume_reproduces_the_uninterrupted_run(finished_run, tmp_path, monkeypatch):
    # Stop the same 3-epoch run mid-way through epoch 3, then resume it from last.pt.
    monkeypatch.setattr(
        TinyNet, "on_forward", after_calls(2 * DIGITS_TRAIN_STEPS_64 + 5, interrupt)
    )
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny_config(tmp_path))
    assert info.value.epoch == 2 and load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    monkeypatch.setattr(TinyNet, "on_forward", None)
    resumed = train(resolve_config(resume=str(tmp_path / "last.pt"), device="cpu"))
    expected = [r["test_loss"] for r in finished_run.history]
    got = [r["test_loss"] for r in resumed.history]
    delta = max(abs(a - b) for a, b in zip(got, expected, strict=True))
    assert delta <= 1e-6
    assert [r["test_acc"] for r in resumed.history] == [r["test_acc"] for r in finished_run.history]
    assert read_history(tmp_path) == resumed.history


def test_ctrl_c_in_first_epoch_leaves_a_resumable_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(TinyNet, "on_forward", after_calls(3, interrupt))
    args = ["train", "--model", TINY, "--dataset", "digits", "--epochs", "2"]
    args += ["--output", str(tmp_path), "--device", "cpu"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert f"dwstft train --resume {tmp_path / 'last.pt'}" in err
    assert err.splitlines()[-1].startswith("interrupted; ")
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 0 and state["history"] == []
    monkeypatch.setattr(TinyNet, "on_forward", None)
    assert main(["train", "--resume", str(tmp_path / "last.pt"), "--device", "cpu"]) == 0
    assert [r["epoch"] for r in read_history(tmp_path)] == [1, 2]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2


def sigterm(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler before kill returns
    return logits


class SigtermNotHandled(Exception):
    """Raised by the test's own SIGTERM handler: main did not install one (without it,
    SIGTERM would end the test process)."""


def test_sigterm_stops_like_ctrl_c_and_the_resumed_run_is_the_uninterrupted_one(
    finished_run, tmp_path, monkeypatch, capsys
):
    # The same 3-epoch run as finished_run, sent SIGTERM (a scheduler, docker stop) a few
    # steps into epoch 3, then resumed from the last.pt it names.
    def unhandled(signum, frame):
        raise SigtermNotHandled

    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        monkeypatch.setattr(
            TinyNet, "on_forward", after_calls(2 * DIGITS_TRAIN_STEPS_64 + 5, sigterm)
        )
        args = ["train", "--model", TINY, "--dataset", "digits", "--epochs", "3"]
        assert main([*args, "--output", str(tmp_path), "--device", "cpu"]) == 143
        assert signal.getsignal(signal.SIGTERM) is unhandled  # main put it back
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capsys.readouterr().err
    last = tmp_path / "last.pt"
    assert [line for line in err.splitlines() if "last.pt" in line or "SIGTERM" in line] == [
        f"terminated by SIGTERM; {last} holds the state after epoch 2. Resume with: "
        f"dwstft train --resume {last}"
    ]
    assert load_checkpoint(last)["epoch"] == 2
    assert not (tmp_path / ".dwstft.lock").exists()
    monkeypatch.setattr(TinyNet, "on_forward", None)
    assert main(["train", "--resume", str(last), "--device", "cpu"]) == 0
    resumed = read_history(tmp_path)
    expected = [r["test_loss"] for r in finished_run.history]
    delta = max(abs(r["test_loss"] - e) for r, e in zip(resumed, expected, strict=True))
    assert delta <= 1e-6
    assert [r["test_acc"] for r in resumed] == [r["test_acc"] for r in finished_run.history]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    nan_from = DIGITS_TRAIN_STEPS_64 + 4  # epoch 2, step 5
    monkeypatch.setattr(TinyNet, "on_forward", after_calls(nan_from, lambda m, z: z * math.nan))
    args = ["train", "--model", TINY, "--dataset", "digits", "--epochs", "3"]
    assert main([*args, "--output", str(tmp_path), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "non-finite training loss" in err and "epoch 2, step 5" in err
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert [r["epoch"] for r in read_history(tmp_path)] == [1]
    with safe_open(str(tmp_path / "best.safetensors"), framework="pt") as f:
        assert f.metadata()["epoch"] == "1"
        assert all(torch.isfinite(f.get_tensor(k)).all() for k in f.keys())  # noqa: SIM118


def test_non_finite_loss_error_from_the_api(tmp_path, monkeypatch):
    monkeypatch.setattr(TinyNet, "on_forward", after_calls(0, lambda m, z: z * math.inf))
    with pytest.raises(NonFiniteLossError) as info:
        train(tiny_config(tmp_path))
    assert (info.value.epoch, info.value.step) == (1, 1)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 0


def test_non_finite_test_loss_is_not_saved_either(tmp_path, monkeypatch):
    last_step_of_epoch_2 = 2 * DIGITS_TRAIN_STEPS_64 - 1
    hook = after_calls(last_step_of_epoch_2, poison_running_stats)
    monkeypatch.setattr(TinyNet, "on_forward", hook)
    with pytest.raises(NonFiniteLossError, match="non-finite test loss") as info:
        train(tiny_config(tmp_path))
    assert (info.value.epoch, info.value.step) == (2, None)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_paper_schedule_on_eight_epochs(tmp_path):
    result = train(tiny_config(tmp_path, epochs=8, max_rotation=0.0, max_shift=0.0))
    assert [r["batch_size"] for r in result.history] == [64] * 6 + [128] * 2
    assert {r["lr"] for r in result.history} == {0.01}


def test_fast_recipe_runs_and_decays_lr(tmp_path):
    result = train(tiny_config(tmp_path, recipe="fast", epochs=3, warmup_epochs=1.0))
    lrs = [r["lr"] for r in result.history]
    assert lrs[0] > lrs[1] > lrs[2] >= 0 and lrs[2] < 0.01
    assert {r["batch_size"] for r in result.history} == {64}


def test_refuses_to_overwrite_an_existing_run(finished_run, capsys):
    args = ["train", "--model", TINY, "--dataset", "digits", "--epochs", "1"]
    assert main([*args, "--output", str(finished_run.run_dir), "--device", "cpu"]) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no_such_net", "--dataset", "digits"], "model must be a registered model"),
        (["--model", TINY, "--dataset", "mnist"], "dataset must be one of"),
        (["--dataset", "digits"], "argument model is required"),
        (["--model", TINY, "--dataset", "digits", "--opt", "lamb"], "opt must be one of"),
    ],
)
def test_cli_rejects_bad_input_with_exit_code_2(tmp_path, capsys, args, message):
    assert main(["train", *args, "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dwstft train: error:") and message in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag", [["--epochs", "0"], ["-b", "-3"], ["--lr", "-1"]])
def test_cli_rejects_bad_numbers_at_parse_time(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as info:
        main(["train", "--model", TINY, "--dataset", "digits", "--output", str(tmp_path), *flag])
    assert info.value.code == 2
    assert f"argument {flag[0]}" in capsys.readouterr().err


def test_resume_rejects_a_changed_setting(finished_run, capsys):
    last = str(finished_run.run_dir / "last.pt")
    assert main(["train", "--resume", last, "--lr", "0.5"]) == 2
    assert "the checkpoint's run used 0.01" in capsys.readouterr().err


def recorded_run_ids(folder: Path) -> tuple[str | None, str | None, str | None]:
    """The run id that config.json, last.pt and best.safetensors of ``folder`` record."""
    config_id = json.loads((folder / "config.json").read_text())["run_id"]
    checkpoint_id = load_checkpoint(folder / "last.pt")["config"]["run_id"]
    with safe_open(str(folder / "best.safetensors"), framework="pt") as f:
        weights_id = f.metadata().get("run_id")
    return config_id, checkpoint_id, weights_id


def test_a_run_writes_one_id_into_every_file(finished_run):
    ids = recorded_run_ids(finished_run.run_dir)
    assert len(set(ids)) == 1 and re.fullmatch(r"[0-9a-f]{32}", ids[0]), ids


def test_a_resumed_run_keeps_its_id_in_an_empty_folder(finished_run, tmp_path, monkeypatch):
    monkeypatch.setattr(TinyNet, "on_forward", after_calls(DIGITS_TRAIN_STEPS_64 + 2, interrupt))
    with pytest.raises(TrainingInterrupted):
        train(tiny_config(tmp_path / "cut", epochs=2))
    monkeypatch.setattr(TinyNet, "on_forward", None)
    original = json.loads((tmp_path / "cut" / "config.json").read_text())["run_id"]
    assert original != recorded_run_ids(finished_run.run_dir)[0]  # a new run, a new id
    last = str(tmp_path / "cut" / "last.pt")
    train(resolve_config(resume=last, output=str(tmp_path / "moved"), device="cpu"))
    assert recorded_run_ids(tmp_path / "moved") == (original,) * 3


def test_a_run_resumed_into_an_empty_folder_is_resumable_there_from_the_start(
    finished_run, tmp_path, monkeypatch
):
    # Interrupted in its first epoch in the new folder, the run names a last.pt that exists
    # there and holds the resumed state (epoch 2 of 3), so nothing of the old run is lost.
    monkeypatch.setattr(
        TinyNet, "on_forward", after_calls(2 * DIGITS_TRAIN_STEPS_64 + 5, interrupt)
    )
    with pytest.raises(TrainingInterrupted):
        train(tiny_config(tmp_path / "cut"))
    monkeypatch.setattr(TinyNet, "on_forward", after_calls(3, interrupt))
    moved = tmp_path / "moved"
    config = resolve_config(resume=str(tmp_path / "cut" / "last.pt"), output=str(moved))
    with pytest.raises(TrainingInterrupted) as info:
        train(config)
    assert info.value.checkpoint == moved / "last.pt" and info.value.epoch == 2
    state = load_checkpoint(moved / "last.pt")
    assert state["epoch"] == 2 and [r["epoch"] for r in state["history"]] == [1, 2]
    assert [r["epoch"] for r in read_history(moved)] == [1, 2]
    monkeypatch.setattr(TinyNet, "on_forward", None)
    resumed = train(resolve_config(resume=str(moved / "last.pt"), device="cpu"))
    assert [r["test_acc"] for r in resumed.history] == [r["test_acc"] for r in finished_run.history]


def run_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def plant_checkpoint(finished_run, folder: Path, **changes) -> str:
    """Write ``finished_run``'s last.pt into ``folder`` with its recorded config changed
    (``run_id=None``: a checkpoint from before run ids, which records none)."""
    from dwstft.train import save_checkpoint

    state = saved_state(finished_run)
    config = {**state["config"], **changes}
    if config.get("run_id") is None:
        config.pop("run_id", None)
    path = folder / "last.pt"
    save_checkpoint(path, {**{k: v for k, v in state.items() if k != "format"}, "config": config})
    return str(path)


@pytest.mark.parametrize(
    ("changes", "found"),
    [
        ({"run_id": "0" * 32}, "run 00000000000000000000000000000000 ("),  # same settings
        ({"run_id": None, "seed": 1}, "a run without an id ("),
    ],
)
def test_a_checkpoint_put_into_another_runs_folder_is_refused(
    finished_run, tmp_path, changes, found
):
    from dwstft.errors import RunFolderError

    folder = tmp_path / "R"
    shutil.copytree(finished_run.run_dir, folder)
    path = plant_checkpoint(finished_run, folder, **changes)
    before = run_files(folder)
    with pytest.raises(RunFolderError) as caught:
        train(resolve_config(resume=path, device="cpu"))
    folder_id = recorded_run_ids(finished_run.run_dir)[0]
    message = str(caught.value)
    assert message.startswith(f"checkpoint {path!r} is {found}{TINY} on digits), written to ")
    assert f"but {str(folder / 'config.json')!r} is run {folder_id} ({TINY} on digits)" in message
    assert "Resume into an empty --output" in message
    assert run_files(folder) == before


def test_a_checkpoint_without_an_id_resumes_where_the_settings_agree(finished_run, tmp_path):
    folder = tmp_path / "R"
    shutil.copytree(finished_run.run_dir, folder)
    path = plant_checkpoint(finished_run, folder, run_id=None)
    assert train(resolve_config(resume=path, device="cpu")).history == finished_run.history


def test_best_weights_of_another_run_are_refused_without_a_config_json(finished_run, tmp_path):
    from dwstft.errors import RunFolderError
    from dwstft.train import save_weights

    folder = tmp_path / "R"
    shutil.copytree(finished_run.run_dir, folder)
    (folder / "config.json").unlink()
    with safe_open(str(folder / "best.safetensors"), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        metadata = {**f.metadata(), "run_id": "1" * 32}
    save_weights(folder / "best.safetensors", state, metadata)
    with pytest.raises(RunFolderError, match=r"best\.safetensors' is run 1{32} \("):
        train(resolve_config(resume=str(folder / "last.pt"), device="cpu"))


def test_an_unreadable_config_json_is_refused_on_resume(finished_run, tmp_path):
    from dwstft.errors import RunFolderError

    folder = tmp_path / "R"
    shutil.copytree(finished_run.run_dir, folder)
    (folder / "config.json").write_text('{"mine": true}')
    with pytest.raises(RunFolderError, match=r"config\.json' cannot be read \(.*\), so it"):
        train(resolve_config(resume=str(folder / "last.pt"), device="cpu"))
    assert (folder / "config.json").read_text() == '{"mine": true}'


def test_every_epoch_reshuffles_and_reaugments(tmp_path, monkeypatch):
    # The loop must hand each epoch a new order and new augmentation; a loop that forgot
    # set_epoch would replay epoch 1's batches.
    seen: list[torch.Tensor] = []
    original = TinyNet.forward

    def forward(self, x):
        if self.training:
            seen.append(x[:4].detach().clone())
        return original(self, x)

    monkeypatch.setattr(TinyNet, "forward", forward)
    train(tiny_config(tmp_path / "run", epochs=2, recipe="fast"))
    steps = len(seen) // 2
    first, second = seen[0], seen[steps]
    assert first.shape == second.shape and not torch.equal(first, second)


def on_call(k: int, action: Callable[[nn.Module, torch.Tensor], torch.Tensor]):
    """A hook that applies ``action`` to the ``k``-th training forward only."""
    calls = {"n": 0}

    def hook(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return action(model, logits) if calls["n"] == k else logits

    return hook


def test_one_non_finite_step_at_an_epochs_end_is_named(tmp_path, monkeypatch):
    # only the last step of epoch 1 is NaN: the check after it sees exactly one bad step
    steps = DIGITS_TRAIN_STEPS_64
    monkeypatch.setattr(TinyNet, "on_forward", on_call(steps, lambda m, z: z * math.nan))
    message = (
        f"non-finite training loss (nan) at epoch 1, step {steps}; stopped without saving this "
        f"state (last good checkpoint: {tmp_path / 'last.pt'}). Lower --lr, enable "
        "--clip-grad, or check the data."
    )
    with pytest.raises(NonFiniteLossError, match="^" + re.escape(message) + "$") as info:
        train(tiny_config(tmp_path))
    assert (info.value.epoch, info.value.step) == (1, steps)


@pytest.mark.parametrize(
    ("amp_dtype", "dtype"), [(None, torch.bfloat16), ("float16", torch.float16)]
)
def test_amp_on_the_cpu_trains_under_autocast(tmp_path, monkeypatch, amp_dtype, dtype):
    seen = []

    def record(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
        seen.append((logits.dtype, torch.is_autocast_enabled("cpu")))
        return logits

    monkeypatch.setattr(TinyNet, "on_forward", record)
    train(tiny_config(tmp_path, epochs=1, amp=True, amp_dtype=amp_dtype))
    assert len(seen) == DIGITS_TRAIN_STEPS_64
    assert set(seen) == {(dtype, True)}
    # float16 needs loss scaling, bfloat16 (the CPU's default) does not
    scaler = load_checkpoint(tmp_path / "last.pt")["scaler"]
    assert (scaler != {}) == (dtype == torch.float16)


def test_printed_accuracies_are_the_recorded_ones(tmp_path, capsys):
    result = train(tiny_config(tmp_path, epochs=2))
    out = capsys.readouterr().out
    # TinyNet(10 classes, 1 channel): conv 9·16 + 16, BN 2·16, linear 16·10 + 10 = 362
    assert out.splitlines()[0] == (
        f"starting: {TINY} (362 trainable parameters) on digits, recipe paper, 2 epochs, "
        f"cpu -> {tmp_path}"
    )
    for record in result.history:
        (line,) = [s for s in out.splitlines() if s.startswith(f"epoch {record['epoch']:>3}/2 ")]
        train_acc, test_acc = (float(v) for v in re.findall(r"acc +([\d.]+)%", line))
        assert train_acc == pytest.approx(100 * record["train_acc"], abs=0.005)
        assert test_acc == pytest.approx(100 * record["test_acc"], abs=0.005)
    final = re.search(
        r"final test accuracy ([\d.]+)% \(epoch 2\); best ([\d.]+)% \(epoch (\d)\)", out
    )
    assert final is not None
    assert float(final[1]) == pytest.approx(100 * result.history[-1]["test_acc"], abs=0.005)
    best = max(result.history, key=lambda r: r["test_acc"])
    assert float(final[2]) == pytest.approx(100 * best["test_acc"], abs=0.005)
    assert int(final[3]) == best["epoch"]


@pytest.mark.parametrize("amp", [{}, {"amp": True, "amp_dtype": "float16"}])
def test_gradient_clipping_bounds_every_step(tmp_path, monkeypatch, amp):
    # SGD (Nesterov, momentum 0.9) at lr 0.01 with gradients clipped to norm 1e-9: 22 steps
    # move no weight by more than 22 · 0.01 · 1e-9 · 19 ≈ 4e-9 (unclipped: about 1e-2);
    # with float16 the clipping follows the loss scaler's unscaling
    first: dict[str, torch.Tensor] = {}

    def record(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
        if not first:
            first.update({k: p.detach().clone() for k, p in model.named_parameters()})
        return logits

    monkeypatch.setattr(TinyNet, "on_forward", record)
    train(tiny_config(tmp_path, epochs=1, opt="sgd", clip_grad=1e-9, **amp))
    state = load_checkpoint(tmp_path / "last.pt")["model"]
    assert set(first) <= set(state)
    assert max((state[k] - p).abs().max().item() for k, p in first.items()) < 1e-7


@pytest.mark.parametrize("recipe", ["paper", "baseline"])
@pytest.mark.parametrize("hflip", [False, True])
def test_the_augmentation_flips_only_where_allowed(tmp_path, recipe, hflip):
    from dwstft.train.loop import _augmentation

    augmentation = _augmentation(tiny_config(tmp_path, recipe=recipe), hflip)
    assert augmentation.hflip is hflip


# --- Ctrl-C at the edges of an epoch, the curves' throttle and absence, restore messages,
# --- the seed's reach, the progress bar (gaps left by mutation testing; docs/testing.md)


def interrupt_first_save_of_epoch(monkeypatch, epoch: int) -> None:
    """Ctrl-C at the call that would write the run folder after ``epoch`` completed epochs:
    the epoch is over and counted, nothing of it is written yet."""
    from dwstft.train import loop

    real, raised = loop._persist, []

    def persist(run, new_best=False):
        if run.epoch == epoch and not raised:
            raised.append(True)
            raise KeyboardInterrupt
        return real(run, new_best=new_best)

    monkeypatch.setattr(loop, "_persist", persist)


def record_curves(monkeypatch) -> list[list[int]]:
    """Replace the curve rendering by a record of the epochs each drawing would show."""
    drawn: list[list[int]] = []

    def plot_curves(runs, path, title):
        ((history,),) = [list(runs.values())]
        drawn.append([r["epoch"] for r in history])

    monkeypatch.setattr("dwstft.train.curves.plot_curves", plot_curves)
    return drawn


def test_ctrl_c_before_an_epochs_save_still_writes_its_best_weights(tmp_path, monkeypatch):
    interrupt_first_save_of_epoch(monkeypatch, epoch=1)
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny_config(tmp_path))
    assert info.value.epoch == 1
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1 and [r["epoch"] for r in read_history(tmp_path)] == [1]
    # epoch 1 is the first, so the best: its weights are those of last.pt
    with safe_open(str(tmp_path / "best.safetensors"), framework="pt") as f:
        meta = f.metadata()
        weights = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    assert meta["epoch"] == "1" and meta["model"] == TINY and meta["dataset"] == "digits"
    assert float(meta["test_acc"]) == state["history"][0]["test_acc"] == state["best"]["test_acc"]
    assert weights.keys() == state["model"].keys()
    assert all(torch.equal(weights[k], v) for k, v in state["model"].items())


class InterruptedAppend(list):
    """A history list that is interrupted right after its ``at``-th record is appended."""

    at = 0

    def append(self, item):
        super().append(item)
        if len(self) == self.at:
            raise KeyboardInterrupt


def test_ctrl_c_before_an_epoch_is_counted_draws_only_the_saved_epochs(tmp_path, monkeypatch):
    # Ctrl-C lands after epoch 2's record joined the history but before the epoch was
    # counted: epoch 2 is lost, and neither the files nor the curves may show it
    from dwstft.train import loop

    drawn = record_curves(monkeypatch)
    real = loop._run_epoch

    def run_epoch(run):
        if type(run.history) is not InterruptedAppend:
            run.history = InterruptedAppend(run.history)
            run.history.at = 2
        return real(run)

    monkeypatch.setattr(loop, "_run_epoch", run_epoch)
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny_config(tmp_path))
    assert info.value.epoch == 1 and load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert [r["epoch"] for r in read_history(tmp_path)] == [1]
    assert drawn and all(epochs == [1] for epochs in drawn)


def test_curves_are_redrawn_at_most_every_30_seconds(tmp_path, monkeypatch):
    # loop.CURVES_EVERY_S: a rendering costs ~0.2 s, so a run of short epochs draws the
    # curves when 30 s (by the monotonic clock) have passed since the last one, and at the end
    import time as real_time
    from types import SimpleNamespace

    from dwstft.train import loop

    drawn = record_curves(monkeypatch)
    now = [0.0]
    ends = {1: 1000.0, 2: 1029.9, 3: 1030.0, 4: 1059.9}  # clock when epoch k is over
    monkeypatch.setattr(
        loop, "time", SimpleNamespace(monotonic=lambda: now[0], perf_counter=real_time.perf_counter)
    )
    real = loop._run_epoch

    def run_epoch(run):
        record = real(run)
        now[0] = ends[record["epoch"]]
        return record

    monkeypatch.setattr(loop, "_run_epoch", run_epoch)
    train(tiny_config(tmp_path, epochs=4, recipe="fast"))
    # epoch 1: never drawn before; 2: 29.9 s after; 3: 30.0 s after; 4: 29.9 s after; the end
    assert drawn == [[1], [1, 2, 3], [1, 2, 3, 4]]


def hide_matplotlib(monkeypatch) -> None:
    """Make ``import matplotlib`` fail as if it were not installed, and the modules that
    import it (``dwstft.train.curves``, ``dwstft._figure``, ``dwstft.viz.*``) be imported
    afresh."""
    import sys

    drawing = ("matplotlib", "dwstft.train.curves", "dwstft._figure")
    for name in list(sys.modules):
        if name in drawing or name.startswith(("matplotlib.", "dwstft.viz.")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_without_matplotlib_the_run_says_once_that_curves_are_skipped(
    tmp_path, monkeypatch, capsys
):
    hide_matplotlib(monkeypatch)
    with pytest.raises(ImportError):
        import dwstft.train.curves  # noqa: F401
    result = train(tiny_config(tmp_path, epochs=3))
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert [r["epoch"] for r in read_history(tmp_path)] == [1, 2, 3]
    assert not (tmp_path / "curves.png").exists()
    note = (
        "note: curves.png is not drawn: matplotlib is not installed (pip install "
        "'dwstft[viz]'); metrics.jsonl and summary.csv hold the numbers"
    )
    assert capsys.readouterr().err.count(note) == 1


def saved_state(finished_run) -> dict:
    return load_checkpoint(finished_run.run_dir / "last.pt")


def resume_from(tmp_path, state: dict) -> str:
    from dwstft.train import save_checkpoint

    path = tmp_path / "copy" / "last.pt"
    path.parent.mkdir()
    save_checkpoint(path, {k: v for k, v in state.items() if k != "format"})
    return str(path)


def refusal(path: str, detail: str) -> str:
    return (
        f"checkpoint {path!r} does not fit model {TINY!r} ({detail}); it was saved from "
        "another model or is damaged"
    )


@pytest.mark.parametrize(
    ("other", "lines"),
    [
        (TinyNet(in_chans=3), 2),  # torch's heading, then the first convolution
        (TinyNet(num_classes=5, in_chans=3), 4),  # ... and the head's weight and bias
    ],
)
def test_resuming_weights_of_another_shape_names_the_first_two_lines(
    finished_run, tmp_path, other, lines
):
    from dwstft.errors import CheckpointError

    with pytest.raises(RuntimeError) as torch_error:
        TinyNet(in_chans=1).load_state_dict(other.state_dict())
    torch_lines = [line.strip() for line in str(torch_error.value).strip().splitlines()]
    assert len(torch_lines) == lines
    path = resume_from(tmp_path, {**saved_state(finished_run), "model": other.state_dict()})
    with pytest.raises(CheckpointError) as caught:
        train(resolve_config(resume=path, device="cpu"))
    assert str(caught.value) == refusal(path, f"{torch_lines[0]}; {torch_lines[1]}")


def test_resuming_a_one_line_optimizer_mismatch_quotes_that_line(finished_run, tmp_path):
    from dwstft.errors import CheckpointError
    from dwstft.train import build_optimizer

    state = saved_state(finished_run)
    group = state["optimizer"]["param_groups"][0]
    group["params"] = group["params"][:-1]  # one parameter short
    config = tiny_config(tmp_path / "unused")
    with pytest.raises(ValueError) as torch_error:
        model = TinyNet()
        build_optimizer(model, config).load_state_dict(state["optimizer"])
    (line,) = str(torch_error.value).strip().splitlines()
    path = resume_from(tmp_path, state)
    with pytest.raises(CheckpointError) as caught:
        train(resolve_config(resume=path, device="cpu"))
    assert str(caught.value) == refusal(path, line)


def test_a_load_error_without_a_message_is_named_by_its_type(finished_run, tmp_path, monkeypatch):
    from dwstft.errors import CheckpointError

    def load_state_dict(self, *args, **kwargs):
        raise RuntimeError

    path = resume_from(tmp_path, saved_state(finished_run))
    monkeypatch.setattr(TinyNet, "load_state_dict", load_state_dict)
    with pytest.raises(CheckpointError) as caught:
        train(resolve_config(resume=path, device="cpu"))
    assert str(caught.value) == refusal(path, "RuntimeError")


def first_training_batch(tmp_path, monkeypatch, seed: int, **overrides) -> torch.Tensor:
    """The images of the first training batch of a run with ``seed`` (no augmentation,
    so only the shuffle decides them); the run is stopped right there."""
    batch = []

    def forward(self, x):
        batch.append(x.detach().clone())
        raise KeyboardInterrupt

    monkeypatch.setattr(TinyNet, "forward", forward)
    output = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    config = tiny_config(output, seed=seed, max_shift=0.0, max_rotation=0.0, **overrides)
    with pytest.raises(TrainingInterrupted):
        train(config)
    return batch[0]


def test_the_seed_decides_the_training_order(tmp_path, monkeypatch):
    one = first_training_batch(tmp_path, monkeypatch, seed=1)
    assert torch.equal(one, first_training_batch(tmp_path, monkeypatch, seed=1))
    assert not torch.equal(one, first_training_batch(tmp_path, monkeypatch, seed=2))


def test_the_progress_bar_counts_images_per_epoch(tmp_path, capsys):
    train(tiny_config(tmp_path, epochs=2))
    err = capsys.readouterr().err
    # 22 steps of 64 = 1,408 images, shown scaled; the bar opens at zero for each epoch
    for epoch in (1, 2):
        assert re.search(
            rf"epoch {epoch}/2:\s+0%\|\s*\| 0\.00/1\.41k \[00:00<\?, \?img/s\]", err
        ), err[:300]


def test_a_diverged_run_stops_at_the_next_check(tmp_path, monkeypatch):
    # the loss is checked every loop.SYNC_EVERY = 10 steps (and at an epoch's end), not
    # only when the epoch is over: NaN from epoch 2's step 5 stops the run after step 10
    forwards = []
    nan_from = DIGITS_TRAIN_STEPS_64 + 4
    poison = after_calls(nan_from, lambda m, z: z * math.nan)

    def count(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
        forwards.append(True)
        return poison(model, logits)

    monkeypatch.setattr(TinyNet, "on_forward", count)
    with pytest.raises(NonFiniteLossError) as info:
        train(tiny_config(tmp_path))
    assert (info.value.epoch, info.value.step) == (2, 5)
    assert len(forwards) == DIGITS_TRAIN_STEPS_64 + 10


@pytest.mark.parametrize(
    ("amp_dtype", "dtype"), [(None, torch.bfloat16), ("float16", torch.float16)]
)
def test_amp_on_the_cpu_evaluates_under_autocast_too(tmp_path, monkeypatch, amp_dtype, dtype):
    seen = set()
    original = TinyNet.forward

    def forward(self, x):
        logits = original(self, x)
        seen.add((self.training, logits.dtype, torch.is_autocast_enabled("cpu")))
        return logits

    monkeypatch.setattr(TinyNet, "forward", forward)
    train(tiny_config(tmp_path, epochs=1, amp=True, amp_dtype=amp_dtype))
    assert seen == {(True, dtype, True), (False, dtype, True)}


def test_channels_last_reaches_training_and_evaluation(tmp_path, monkeypatch):
    # digits have one channel, for which NCHW is already channels-last: give them three
    import dataclasses

    from dwstft.data import datasets
    from dwstft.train import loop

    real = loop.load_dataset

    def three_channel_digits(name, data_dir=None):
        splits = real(name, data_dir)
        images = {
            split: torch.cat([x, 255 - x, x // 2], 1)
            for split, x in [
                ("train_images", splits.train_images),
                ("test_images", splits.test_images),
            ]
        }
        mean, std = datasets.channel_stats(images["train_images"])
        return dataclasses.replace(splits, **images, mean=mean, std=std)

    seen = set()
    original = TinyNet.forward

    def forward(self, x):
        assert x.shape[1] == 3
        seen.add(
            (self.training, x.is_contiguous(memory_format=torch.channels_last), x.is_contiguous())
        )
        return original(self, x)

    monkeypatch.setattr(loop, "load_dataset", three_channel_digits)
    monkeypatch.setattr(TinyNet, "forward", forward)
    train(tiny_config(tmp_path, epochs=1, channels_last=True))
    assert seen == {(True, True, False), (False, True, False)}


@pytest.mark.parametrize("padding", [0, 3])
def test_the_crop_padding_reaches_the_augmentation(tmp_path, padding):
    from dwstft.train.loop import _augmentation

    config = tiny_config(tmp_path, recipe="baseline", crop_padding=padding)
    assert _augmentation(config, hflip=False).padding == padding


def test_the_data_dir_reaches_the_dataset(tmp_path, monkeypatch):
    from dwstft.train import loop

    asked = []
    real = loop.load_dataset

    def load_dataset(*args, **kwargs):
        asked.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "load_dataset", load_dataset)
    data_dir = tmp_path / "data"
    train(tiny_config(tmp_path / "run", epochs=1, data_dir=str(data_dir)))
    (call,) = asked
    named = dict(zip(("name", "data_dir"), call[0], strict=False)) | call[1]
    assert named == {"name": "digits", "data_dir": str(data_dir)}


def test_config_json_is_indented_for_reading(tmp_path):
    train(tiny_config(tmp_path, epochs=1))
    text = (tmp_path / "config.json").read_text()
    saved = json.loads(text)
    assert len(text.splitlines()) > len(saved)  # one field a line at least
    assert text.startswith('{\n  "')  # two spaces deep


def test_images_per_second_counts_training_time_only(tmp_path):
    # the training part of an epoch takes less than the whole epoch (which also evaluates),
    # so the training rate is above images / epoch seconds
    result = train(tiny_config(tmp_path, epochs=2))
    for record in result.history:
        assert record["images_per_s"] * record["seconds"] > 1408  # 22 steps of 64


def test_a_float16_run_resumes_its_loss_scaler(tmp_path, monkeypatch):
    config = {"epochs": 2, "amp": True, "amp_dtype": "float16", "recipe": "fast"}
    train(tiny_config(tmp_path / "whole", **config))
    whole_state = load_checkpoint(tmp_path / "whole" / "last.pt")
    monkeypatch.setattr(TinyNet, "on_forward", after_calls(DIGITS_TRAIN_STEPS_64 + 3, interrupt))
    with pytest.raises(TrainingInterrupted):
        train(tiny_config(tmp_path / "cut", **config))
    saved = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert saved["epoch"] == 1 and saved["scaler"]["scale"] > 0
    # the resumed run must start from the saved scale, not a new scaler's 65,536
    saved["scaler"]["scale"] = 1024.0
    saved["scaler"]["_growth_tracker"] = 0
    from dwstft.train import save_checkpoint

    save_checkpoint(tmp_path / "cut" / "last.pt", {k: v for k, v in saved.items() if k != "format"})
    monkeypatch.setattr(TinyNet, "on_forward", None)
    resumed = train(resolve_config(resume=str(tmp_path / "cut" / "last.pt"), device="cpu"))
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    scale = load_checkpoint(tmp_path / "cut" / "last.pt")["scaler"]["scale"]
    assert scale == 1024.0  # 22 finite steps: no growth (every 2,000), no back-off
    assert whole_state["scaler"]["scale"] == 65536.0  # the same run, never interrupted


def test_given_normalisation_replaces_the_datasets(tmp_path, monkeypatch):
    from dwstft.data import load_dataset

    digits = load_dataset("digits")
    default = first_training_batch(tmp_path, monkeypatch, seed=1)
    given = first_training_batch(tmp_path, monkeypatch, seed=1, norm_mean=[0.5], norm_std=[0.25])
    # both are the same pixels in [0, 1], normalised two ways
    pixels = default * digits.std[0] + digits.mean[0]
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6 and pixels.max() > 0.9
    torch.testing.assert_close(given, (pixels - 0.5) / 0.25, atol=1e-5, rtol=0)


def test_a_batch_larger_than_the_training_split_is_refused_whole(tmp_path):
    from dwstft.train import RunSetupError

    config = tiny_config(tmp_path, batch_size=2048, final_batch_size=1024)
    message = (
        "batch size 2048 exceeds the 1437 training samples, so drop_last leaves no batch; "
        "lower --batch-size/--final-batch-size"
    )
    with pytest.raises(RunSetupError, match="^" + re.escape(message) + "$"):
        train(config)


# --- sample G of loop.py's mutants: the CUDA-graph refusal's text, the dropout stream's
# --- seed, the progress bar's count and leave flag, the crop-flip-rotate angle


def test_a_cuda_graph_mode_on_the_cpu_is_refused_whole(tmp_path):
    from dwstft.train import RunSetupError

    config = tiny_config(tmp_path, compile=True, compile_mode="reduce-overhead")
    message = (
        "--compile-mode reduce-overhead (--cuda-graphs) replays CUDA graphs and needs a CUDA "
        "device, but the run is on cpu; drop it on the CPU"
    )
    with pytest.raises(RunSetupError, match="^" + re.escape(message) + "$"):
        train(config)


def global_rng_draws(tmp_path, monkeypatch, seed: int) -> list[float]:
    """The first global-RNG draw of each of 2 epochs' training forwards, as a model with
    dropout would make it (the registered models have none, so a forward stands in)."""
    draws: list[list[float]] = []
    original = TinyNet.forward

    def forward(self, x):
        if self.training:
            draws[-1].append(torch.rand(1).item())
        return original(self, x)

    from dwstft.train import loop

    run_epoch = loop._run_epoch

    def counted_run_epoch(run):
        draws.append([])
        return run_epoch(run)

    monkeypatch.setattr(TinyNet, "forward", forward)
    monkeypatch.setattr(loop, "_run_epoch", counted_run_epoch)
    train(tiny_config(tmp_path / f"run{len(list(tmp_path.iterdir()))}", seed=seed, epochs=2))
    assert len(draws) == 2 and all(draws)
    return [epoch[0] for epoch in draws]


def test_the_dropout_stream_follows_the_seed_and_the_epoch(tmp_path, monkeypatch):
    one = global_rng_draws(tmp_path, monkeypatch, seed=1)
    assert one[0] != one[1]  # each epoch draws afresh
    assert one == global_rng_draws(tmp_path, monkeypatch, seed=1)
    other = global_rng_draws(tmp_path, monkeypatch, seed=2)
    assert other[0] != one[0] and other[1] != one[1]


def recording_bars(monkeypatch) -> list:
    """Swap the loop's tqdm for a subclass that keeps every bar, its kwargs and updates."""
    from tqdm import tqdm

    from dwstft.train import loop

    bars = []

    class RecordingBar(tqdm):
        def __init__(self, *args, **kwargs):
            self.kwargs, self.updates = kwargs, []
            super().__init__(*args, **kwargs)
            bars.append(self)

        def update(self, n=1):
            self.updates.append(n)
            return super().update(n)

    monkeypatch.setattr(loop, "tqdm", RecordingBar)
    return bars


def test_the_progress_bar_ends_at_the_epochs_images(tmp_path, monkeypatch):
    bars = recording_bars(monkeypatch)
    train(tiny_config(tmp_path, epochs=2))
    # reported every 10 steps: 22 steps of 64, then 11 steps of 128 (the paper schedule)
    assert [bar.updates for bar in bars] == [[640, 640, 128], [1280, 128]]
    assert [bar.n for bar in bars] == [bar.total for bar in bars] == [1408, 1408]


def test_the_epoch_bars_leave_no_line_behind(tmp_path, monkeypatch):
    # One bar left on screen per epoch would flood the terminal; the epoch lines say it all.
    bars = recording_bars(monkeypatch)
    train(tiny_config(tmp_path, epochs=1))
    assert [bar.kwargs["leave"] for bar in bars] == [False]


@pytest.mark.parametrize("recipe", ["paper", "baseline"])
def test_the_max_rotation_reaches_the_augmentation(tmp_path, recipe):
    from dwstft.train.loop import _augmentation

    config = tiny_config(tmp_path, recipe=recipe, max_rotation=7.5)
    assert _augmentation(config, hflip=False).max_rotation == 7.5
