"""`--recipe baseline` end to end: what a run records, and its options on the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from dwstft.models import list_models, registry
from dwstft.models.base import ImageClassifier
from dwstft.train import load_checkpoint, make_config, train

TINY = "tiny_baseline_recipe_net"
#: 1,437 digits training images in batches of 128, the last partial one kept: 12 steps.
STEPS = 12


class TinyNet(ImageClassifier):
    def __init__(self, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__(8, num_classes)
        self.features = nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.BatchNorm2d(8))


@pytest.fixture(scope="module", autouse=True)
def tiny_model_registered():
    assert TINY not in list_models()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._MODELS, TINY, TinyNet)
        yield


def test_baseline_run_follows_the_recipe(tmp_path):
    given = {"model": TINY, "dataset": "digits", "output": str(tmp_path), "epochs": 2}
    # a short run warms up for a quarter of its epochs unless told otherwise
    assert make_config("baseline", **given).warmup_epochs == 0.5
    config = make_config("baseline", **given, warmup_epochs=1.0, device="cpu")
    assert config.lr_milestones == (0, 0, 1)  # round(M·2/200) - 1 for M = 60, 120, 160
    result = train(config)
    # epoch 1 warms up (its last step at 0.1·11/12), epoch 2 runs at 0.1·0.2³
    lrs = [r["lr"] for r in result.history]
    assert lrs == pytest.approx([0.1 * (STEPS - 1) / STEPS, 0.0008], rel=1e-12)
    assert [r["batch_size"] for r in result.history] == [128] * 2
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["recipe"] == "baseline" and saved["augment"] == "crop_flip_rotate"
    assert saved["lr_milestones"] == [0, 0, 1] and saved["norm_mean"] is None
    state = load_checkpoint(tmp_path / "last.pt")["optimizer"]
    assert len(state["param_groups"]) == 1 and state["param_groups"][0]["weight_decay"] == 5e-4
    assert not state["param_groups"][0]["nesterov"]
    buffers = [s["momentum_buffer"] for s in state["state"].values()]
    assert len(buffers) == 6 and all(torch.isfinite(b).all() for b in buffers)  # conv, BN, head


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dwstft.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lr-milestones", "120", "60"], "lr_milestones must be non-decreasing ints"),
        (["--crop-padding", "-2"], "argument --crop-padding"),
    ],
)
def test_cli_rejects_bad_baseline_options(tmp_path, flags, message):
    out = tmp_path / "run"
    base = ["train", "--recipe", "baseline", "--model", "mobilenet", "--dataset", "digits"]
    proc = run_cli(*base, "--output", str(out), *flags)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dwstft train: error:")
    assert message in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()
