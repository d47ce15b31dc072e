"""DeviceLoader: order, sharding, batch sizes, normalisation, reproducible augmentation."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from dwstft.data import BatchAugment, DeviceLoader, channel_stats


def indexed(n: int, c: int = 1, size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """n images whose every pixel is i % 256, labelled i."""
    labels = torch.arange(n)
    images = (labels % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, c, size, size)
    return images.contiguous(), labels


def loader(n: int = 103, batch_size: int = 10, **kwargs) -> DeviceLoader:
    images, labels = indexed(n)
    return DeviceLoader(images, labels, batch_size, mean=(0.0,), std=(1.0,), **kwargs)


def epoch_labels(dl: DeviceLoader, epoch: int = 0) -> list[int]:
    dl.set_epoch(epoch)
    return [int(y) for _, batch in dl for y in batch]


def test_every_sample_once_per_epoch():
    dl = loader(103, 10)
    sizes = [len(y) for _, y in dl]
    assert sizes == [10] * 10 + [3] and len(dl) == 11 and dl.num_samples == 103
    seen = epoch_labels(dl)
    assert sorted(seen) == list(range(103)) and seen != list(range(103))


def test_images_travel_with_their_labels():
    for x, y in loader(103, 16):
        assert x.dtype == torch.float32 and x.shape == (len(y), 1, 4, 4)
        assert torch.equal(torch.round(x[:, 0, 0, 0] * 255).long(), y)


def test_drop_last():
    dl = loader(103, 10, drop_last=True)
    sizes = [len(y) for _, y in dl]
    assert sizes == [10] * 10 and len(dl) == 10


def test_without_shuffle_order_is_sequential():
    assert epoch_labels(loader(25, 7, shuffle=False)) == list(range(25))


def test_order_depends_only_on_seed_and_epoch():
    a, b = loader(seed=3), loader(seed=3)
    assert epoch_labels(a, 0) == epoch_labels(b, 0)
    assert epoch_labels(a, 0) != epoch_labels(a, 1)
    resumed = epoch_labels(b, 5)
    assert epoch_labels(loader(seed=3), 5) == resumed
    assert epoch_labels(loader(seed=4), 5) != resumed


@pytest.mark.parametrize(("n", "world_size"), [(100, 2), (101, 2), (103, 3), (5, 4)])
def test_ranks_split_the_epoch(n, world_size):
    per_rank = [
        epoch_labels(loader(n, 4, rank=r, world_size=world_size)) for r in range(world_size)
    ]
    shards = [loader(n, 4, rank=r, world_size=world_size) for r in range(world_size)]
    expected = -(-n // world_size)
    assert all(len(s) == expected for s in per_rank)
    assert all(dl.num_samples == expected and len(dl) == len(shards[0]) for dl in shards)
    combined = [i for s in per_rank for i in s]
    assert set(combined) == set(range(n))
    repeats = Counter(combined)
    assert sum(count - 1 for count in repeats.values()) == expected * world_size - n
    assert max(repeats.values()) <= 2  # only the wrap padding repeats, once
    if n % world_size == 0:
        assert all(set(a).isdisjoint(b) for i, a in enumerate(per_rank) for b in per_rank[i + 1 :])


def test_ranks_interleave_the_shared_permutation():
    full = epoch_labels(loader(100, 7, seed=9), 2)
    shards = [epoch_labels(loader(100, 7, seed=9, rank=r, world_size=2), 2) for r in (0, 1)]
    assert shards[0] == full[0::2] and shards[1] == full[1::2]


def test_batch_size_can_change_between_epochs():
    dl = loader(103, 10)
    dl.batch_size = 25
    assert len(dl) == 5 and [len(y) for _, y in dl] == [25, 25, 25, 25, 3]
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        dl.batch_size = 0


def test_normalised_epoch_has_zero_mean_unit_std():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (300, 3, 8, 8), dtype=torch.uint8, generator=g)
    images[:, 1] //= 3
    images[:, 2] = images[:, 2] // 2 + 100
    mean, std = channel_stats(images)
    dl = DeviceLoader(images, torch.zeros(300, dtype=torch.long), 64, mean, std)
    x = torch.cat([batch for batch, _ in dl]).to(torch.float64)
    torch.testing.assert_close(
        x.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_augmentation_is_reproducible_per_seed_epoch_rank():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(40)

    def first_batch(epoch: int = 0, rank: int = 0, augment: BatchAugment | None = None):
        dl = DeviceLoader(
            images, labels, 8, (0.5,) * 3, (0.25,) * 3, augment=augment, rank=rank, world_size=2
        )
        dl.set_epoch(epoch)
        return next(iter(dl))

    augment = BatchAugment()
    plain_x, plain_y = first_batch()
    x, y = first_batch(augment=augment)
    assert torch.equal(y, plain_y) and not torch.equal(x, plain_x)
    assert torch.equal(first_batch(augment=augment)[0], x)
    assert not torch.equal(first_batch(epoch=1, augment=augment)[0], x)
    flipped = BatchAugment(max_shift=0.0, max_rotation=0.0, flip_prob=1.0)
    assert torch.equal(first_batch(augment=flipped)[0], plain_x.flip(-1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rank": 2, "world_size": 2}, r"rank must lie in \[0, 2\), got 2"),
        ({"world_size": 0}, "world_size must be >= 1, got 0"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
        ({"std": (0.0,)}, "std positive"),
        ({"labels": torch.arange(5)}, r"labels must have shape \(10,\)"),
        ({"images": torch.zeros(10, 1, 4, 4)}, "images must be uint8"),
    ],
)
def test_invalid_arguments(kwargs, match):
    images, labels = indexed(10)
    args = {"images": images, "labels": labels, "batch_size": 4, "mean": (0.0,), "std": (1.0,)}
    with pytest.raises(ValueError, match=match):
        DeviceLoader(**(args | kwargs))


def test_set_epoch_rejects_negative():
    with pytest.raises(ValueError, match="epoch must be >= 0, got -1"):
        loader().set_epoch(-1)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_loader_matches_cpu_order():
    cpu = epoch_labels(loader(seed=2), 3)
    dl = loader(seed=2, device="cuda", augment=BatchAugment())
    dl.set_epoch(3)
    batches = list(dl)
    assert all(x.device.type == "cuda" and y.device.type == "cuda" for x, y in batches)
    assert [int(y) for _, b in batches for y in b] == cpu
