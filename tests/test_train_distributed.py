"""DDP: the unchanged ``dwstft train`` command under torchrun, 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

from dwstft.train import load_checkpoint, read_history
from dwstft.train.distributed import any_rank, setup

# torchrun runs this script, which registers a tiny model and then calls the real CLI.
LAUNCHER = textwrap.dedent(
    """
    import sys

    from torch import nn

    from dwstft.cli import main
    from dwstft.models import register_model
    from dwstft.models.base import ImageClassifier


    class TinyNet(ImageClassifier):
        def __init__(self, num_classes=10, in_chans=1):
            super().__init__(16, num_classes)
            self.features = nn.Sequential(
                nn.Conv2d(in_chans, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()
            )


    register_model(TinyNet, name="tiny_ddp_net")
    sys.exit(main(sys.argv[1:]))
    """
)


def test_single_process_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = setup("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert any_rank(True, ctx) and not any_rank(False, ctx)


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(script), "train", "--model", "tiny_ddp_net", "--dataset", "digits"]
    cmd += ["--epochs", "2", "--output", str(out), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("starting:") == 1 and "x 2 processes" in proc.stdout
    assert proc.stdout.count("final test accuracy") == 1

    records = read_history(out)
    assert [r["epoch"] for r in records] == [1, 2]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # Global numbers: 1437 training images padded to 2 x 719; each rank drops its last
    # incomplete batch (paper recipe: global 64 then 128 -> 32 then 64 per rank).
    train_counts = [2 * (719 // 32 * 32), 2 * (719 // 64 * 64)]
    for r, count in zip(records, train_counts, strict=True):
        for key, n in (("train_acc", count), ("test_acc", 360)):
            assert 0 <= r[key] <= 1 and math.isclose(r[key] * n, round(r[key] * n), abs_tol=1e-6)
        assert math.isfinite(r["train_loss"]) and math.isfinite(r["test_loss"])
    assert [r["batch_size"] for r in records] == [64, 128]
    assert load_checkpoint(out / "last.pt")["epoch"] == 2

    # The sharded, all-reduced evaluation equals a single-process evaluation of last.pt.
    evaluated = subprocess.run(
        [sys.executable, str(script), "eval", "--checkpoint", str(out / "last.pt"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads(evaluated.stdout)["test_acc"] == records[-1]["test_acc"]
