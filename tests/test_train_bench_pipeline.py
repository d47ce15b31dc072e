"""``dwstft bench pipeline``: the per-image reference pipeline and a tiny side-by-side run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dwstft.bench.pipeline import (
    PerImageAugmentDataset,
    fabricate_images,
    format_pipeline_table,
    run_pipeline_benchmark,
)


def tiny_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)
    )


def test_fabricated_images_are_cifar_shaped():
    images, labels = fabricate_images(20, seed=1)
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == (20,) and labels.min() >= 0 and labels.max() < 10
    assert torch.equal(fabricate_images(20, seed=1)[0], images)
    with pytest.raises(ValueError, match="n must be >= 1"):
        fabricate_images(0)


def test_per_image_dataset_augments_and_normalises():
    images, labels = fabricate_images(4)
    still = PerImageAugmentDataset(images, labels, max_shift=0.0, max_rotation=0.0)
    torch.manual_seed(0)
    x, y = still[2]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == labels[2]
    raw = images[2].float() / 255
    mean, std = still.mean, still.std
    flipped = torch.flip(raw, dims=[2])
    assert torch.allclose(x, (raw - mean) / std, atol=1e-6) or torch.allclose(
        x, (flipped - mean) / std, atol=1e-6
    )


def test_side_by_side_run_reports_every_pipeline():
    images, labels = fabricate_images(256)
    results = run_pipeline_benchmark(
        tiny_model(), images, labels, batch=32, batches=4, rounds=2, workers=(0,)
    )
    assert [r.name for r in results] == ["on-device", "DataLoader (0 workers)"]
    assert all(r.train_images_per_s > 0 and r.data_images_per_s > 0 for r in results)
    table = format_pipeline_table(results, "tiny", 32, 256)
    assert "| on-device |" in table and "1.00x" in table and "best DataLoader" in table
