"""Sharded evaluation counts every test sample exactly once: the wrap-around padding that
evens out the shards must not be scored."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dwstft.data import DeviceLoader
from dwstft.train import evaluate, metrics
from dwstft.train.distributed import DistContext
from dwstft.train.evaluate import amp_dtype_for, autocast


@pytest.mark.parametrize(("n", "world_size", "batch"), [(7, 2, 3), (10, 3, 4), (5, 4, 2)])
def test_sharded_evaluation_counts_each_sample_once(monkeypatch, n, world_size, batch):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8)
    labels = torch.randint(0, 3, (n,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))

    def loader(rank: int, size: int) -> DeviceLoader:
        return DeviceLoader(
            images, labels, batch, (0.5,), (0.25,), shuffle=False, rank=rank, world_size=size
        )

    single_loss, single_acc, single_count = evaluate(model, loader(0, 1))
    shards: list[torch.Tensor] = []
    # Stand-in for the all-reduce: record each rank's sums; their total is what it returns.
    monkeypatch.setattr(metrics, "all_reduce_sum", lambda t, ctx: shards.append(t.clone()) or t)
    for rank in range(world_size):
        ctx = DistContext(rank, world_size, rank, torch.device("cpu"))
        evaluate(model, loader(rank, world_size), ctx)
    loss_sum, correct, count = torch.stack(shards).sum(0).tolist()
    assert single_count == n and count == n
    assert correct / count == pytest.approx(single_acc)
    assert loss_sum / count == pytest.approx(single_loss, rel=1e-6)


def test_autocast_is_off_without_amp_and_uses_the_asked_dtype_with_it():
    cpu = torch.device("cpu")
    with autocast(cpu, amp=False):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(cpu, amp=True):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with autocast(cpu, amp=True, amp_dtype="float16"):
        assert torch.get_autocast_dtype("cpu") == torch.float16
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float16


def test_the_default_amp_dtype_is_float16_on_cuda_and_bfloat16_elsewhere():
    assert amp_dtype_for(torch.device("cuda"), None) is torch.float16
    assert amp_dtype_for(torch.device("cpu"), None) is torch.bfloat16
    assert amp_dtype_for(torch.device("cuda"), "bfloat16") is torch.bfloat16
