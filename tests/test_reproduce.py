"""`reproduce table2` on digits with tiny models: report, recipes per row, skip finished
runs, resume; the like-for-like verdicts on hand-made run folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from dwstft.cli import main
from dwstft.errors import RunFolderError
from dwstft.models import list_models, register_model
from dwstft.models.base import ImageClassifier
from dwstft.reproduce import run_state, run_table2, write_report
from dwstft.train import TrainingInterrupted, make_config, table2
from dwstft.train.metrics import write_history
from dwstft.train.table2 import PARAMFIT_MODELS, TABLE2_MODELS, recipe_for

NAMES = ("repro_tiny_a", "repro_tiny_b")


class Tiny(ImageClassifier):
    """conv → BN → ReLU → GAP → linear; ``interrupt_after`` raises Ctrl-C at a forward."""

    interrupt_after: int | None = None
    calls = 0

    def __init__(self, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__(8, num_classes)
        self.features = nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.BatchNorm2d(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and Tiny.interrupt_after is not None:
            Tiny.calls += 1
            if Tiny.calls > Tiny.interrupt_after:
                raise KeyboardInterrupt
        return super().forward(x)


for _name in NAMES:
    if _name not in list_models():
        register_model(Tiny, name=_name)


def sweep(out: Path, **kwargs) -> Path:
    return run_table2(out, datasets=("digits",), models=NAMES, epochs=2, device="cpu", **kwargs)


def saved_recipe(out: Path, name: str) -> str:
    return json.loads((out / "digits" / name / "config.json").read_text())["recipe"]


def test_sweep_writes_the_report_and_skips_finished_runs(tmp_path, monkeypatch):
    # auto: a row trains with its source recipe (here b is declared a baseline)
    monkeypatch.setitem(table2.SOURCE_RECIPES, NAMES[1], "baseline")
    report = sweep(tmp_path)
    text = report.read_text()
    assert "## digits" in text
    # 3 → 8 channels 3×3 on 32×32 (221,184 MACs) + an 8 → 100 head: 0.2 M MACs
    assert "| repro_tiny_a | 0.00M | – | 0.2 | `paper` | 2/2 |" in text
    assert "| repro_tiny_b | 0.00M | – | 0.2 | `baseline` | 2/2 |" in text
    assert "no paper number" in text
    assert "- `baseline`: opt momentum, lr 0.1 (×0.2 after epochs 0, 0, 1, 0.5 warm-up" in text
    assert "- `paper`: opt adam, lr 0.01 (constant), batch 64, 128 for the last 1 epochs" in text
    assert [saved_recipe(tmp_path, n) for n in NAMES] == ["paper", "baseline"]
    for name in NAMES:
        assert run_state(tmp_path / "digits" / name, 2) == "done"
    stamp = (tmp_path / "digits" / NAMES[0] / "last.pt").stat().st_mtime_ns
    sweep(tmp_path)
    assert (tmp_path / "digits" / NAMES[0] / "last.pt").stat().st_mtime_ns == stamp
    # the folders hold auto-recipe runs: forcing `paper` on b is refused, not mixed in
    with pytest.raises(RunFolderError, match="holds a run with recipe 'baseline', not 'paper'"):
        sweep(tmp_path, recipe="paper")


def test_one_recipe_for_every_row(tmp_path, monkeypatch):
    monkeypatch.setitem(table2.SOURCE_RECIPES, NAMES[1], "baseline")
    run_table2(tmp_path, datasets=("digits",), models=NAMES, recipe="baseline", epochs=1)
    assert [saved_recipe(tmp_path, n) for n in NAMES] == ["baseline", "baseline"]
    assert recipe_for("mobilenet", "auto") == "baseline" == recipe_for("shufflenet_g3", "auto")
    assert recipe_for("stftnet_b8_f128", "auto") == "paper" == recipe_for("relpunet", "auto")
    assert recipe_for("mobilenet", "paper") == "paper"
    with pytest.raises(ValueError, match="recipe must be one of auto, paper, fast, baseline"):
        recipe_for("mobilenet", "slow")


def test_interrupted_sweep_resumes_where_it_stopped(tmp_path, monkeypatch):
    steps = 1437 // 64 + 1437 // 128  # one 2-epoch run: batch 64, then 128 (paper recipe)
    monkeypatch.setattr(Tiny, "calls", 0)
    monkeypatch.setattr(Tiny, "interrupt_after", steps + 1437 // 64 + 3)
    with pytest.raises(TrainingInterrupted):
        sweep(tmp_path)  # run a finishes (2 epochs); run b stops in its 2nd epoch
    assert run_state(tmp_path / "digits" / NAMES[0], 2) == "done"
    assert run_state(tmp_path / "digits" / NAMES[1], 2) == "partial"
    partial = (tmp_path / "reproduction.md").read_text()
    assert f"| {NAMES[1]} | 0.00M | – | 0.2 | `paper` | 1/2 |" in partial
    monkeypatch.setattr(Tiny, "interrupt_after", None)
    sweep(tmp_path)
    assert run_state(tmp_path / "digits" / NAMES[1], 2) == "done"


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="datasets"):
        run_table2(tmp_path, datasets=("imagenet",))
    with pytest.raises(ValueError, match="unknown model"):
        run_table2(tmp_path, datasets=("digits",), models=("resnet50",))
    with pytest.raises(SystemExit):
        main(["reproduce", "table2", "--dataset", "mnist"])


def test_cli_rejects_a_pattern_matching_nothing(tmp_path):
    out = tmp_path / "t2"
    cmd = [sys.executable, "-m", "dwstft.cli", "reproduce", "table2", "--dataset", "digits"]
    proc = subprocess.run(
        [*cmd, "--models", "resnet*", "--output", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dwstft reproduce table2: error: --models")
    assert not out.exists()


def test_default_rows_and_paramfit_rows():
    assert TABLE2_MODELS[:5] == (
        "shufflenet",
        "shufflenet_g3",
        "shufflenetv2",
        "mobilenet",
        "mobilenetv2",
    )
    assert len(TABLE2_MODELS) == 12 and TABLE2_MODELS[5] == "relpunet"
    assert list(PARAMFIT_MODELS) == list_models("stftnet_paramfit_*")


def fake_run(out: Path, dataset: str, name: str, recipe: str, epochs: int, done: int) -> None:
    """A run folder as `dwstft train` leaves it, without training: config.json + metrics."""
    run_dir = out / dataset / name
    run_dir.mkdir(parents=True)
    config = make_config(recipe, model=name, dataset=dataset, output=str(run_dir), epochs=epochs)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    history = [{"epoch": e + 1, "test_acc": 0.5 + e / 1000} for e in range(done)]
    write_history(run_dir, history)


def report_rows(out: Path, dataset: str) -> dict[str, str]:
    section = (out / "reproduction.md").read_text().split(f"## {dataset}\n")[1].split("##")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    return {row.split(" | ")[0][2:]: row for row in rows[1:]}


def test_report_says_which_rows_are_like_for_like(tmp_path):
    names = (
        "mobilenet",
        "shufflenet",
        "shufflenet_g3",
        "stftnet_b8_f128",
        "stftnet_paramfit_b8_f128",
    )
    fake_run(tmp_path, "cifar100", "mobilenet", "baseline", 200, 200)
    fake_run(tmp_path, "cifar100", "shufflenet", "baseline", 200, 200)
    fake_run(tmp_path, "cifar100", "shufflenet_g3", "paper", 400, 3)
    fake_run(tmp_path, "cifar100", "stftnet_b8_f128", "paper", 400, 400)
    fake_run(tmp_path, "cifar100", "stftnet_paramfit_b8_f128", "paper", 400, 400)
    fake_run(tmp_path, "cifar10", "mobilenet", "baseline", 200, 200)
    write_report(tmp_path, ("cifar10", "cifar100"), names)
    c100 = report_rows(tmp_path, "cifar100")
    assert c100["mobilenet"] == (
        "| mobilenet | 3.31M | 3.31M | 46.4 | `baseline` | 200/200 | 69.90 (69.90) | 65.98 | yes |"
    )
    assert c100["shufflenet"].endswith("| no: paper's number is g = 3 (shufflenet_g3) |")
    assert c100["shufflenet_g3"].endswith(
        "| `paper` | 3/400 | 50.20 (50.20) | 70.06 | no: paper's number: `baseline` recipe; "
        "3 of 200 epochs |"
    )
    assert c100["stftnet_b8_f128"].endswith("| no: params 0.33× paper's |")
    assert c100["stftnet_paramfit_b8_f128"].endswith("| 70.19 | yes |")
    c10 = report_rows(tmp_path, "cifar10")
    assert c10["mobilenet"].endswith("| 91.87 | no: paper's source unknown |")
    assert c10["shufflenet"].endswith("| – | – | – | 90.80 | not run yet |")
