"""A whole training step captured as one CUDA graph (dwstft.bench.capture) equals eager."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from dwstft.bench.capture import capture_training_step
from dwstft.models import create_model
from dwstft.train import make_config
from dwstft.train.optim import build_optimizer


def test_capture_refuses_cpu_tensors():
    model = create_model("stftnet_b8_f128", num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="CUDA"):
        capture_training_step(model, optimizer, x, y)


def test_cli_refuses_capture_without_cuda_in_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "dwstft.cli", "bench", "budget", "--capture", "--device", "cpu"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "dwstft bench budget: error: --capture records CUDA graphs and needs --device cuda; got cpu"
    ]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    ("model_name", "recipe"), [("stftnet_b8_f128", "paper"), ("mobilenetv2", "baseline")]
)
def test_captured_steps_follow_eager_steps(model_name, recipe, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    config = make_config(recipe, model=model_name, dataset="cifar100", output="-")
    torch.manual_seed(0)
    eager = create_model(model_name, num_classes=100).cuda().train()
    captive = create_model(model_name, num_classes=100).cuda().train()
    captive.load_state_dict(eager.state_dict())
    start = {k: v.clone() for k, v in eager.state_dict().items() if v.is_floating_point()}
    eager_opt = build_optimizer(eager, config)
    x = torch.randn(16, 3, 32, 32, device="cuda")  # the warm-up steps run on a valid batch
    y = torch.zeros(16, dtype=torch.long, device="cuda")
    replay = capture_training_step(captive, build_optimizer(captive, config), x, y)
    for i in range(4):
        batch, labels = torch.randn_like(x), torch.randint(0, 100, y.shape, device="cuda")
        eager_opt.zero_grad(set_to_none=True)
        eager_loss = F.cross_entropy(eager(batch), labels)
        eager_loss.backward()
        eager_opt.step()
        x.copy_(batch)
        y.copy_(labels)
        # The first step starts from the same weights: equal losses. Later ones may drift by
        # rounding that Adam's early, sign-like updates amplify.
        rel = 1e-5 if i == 0 else 1e-3
        assert replay().item() == pytest.approx(eager_loss.item(), rel=rel)
    captured = captive.state_dict()
    moved = sum((eager.state_dict()[k] - v).abs().sum() for k, v in start.items())
    apart = sum((captured[k] - eager.state_dict()[k]).abs().sum() for k in start)
    assert moved > 0 and apart <= 0.01 * moved, f"{apart=:.3g} of {moved=:.3g}"
