"""A data loader that keeps a whole split on the device and slices batches out of it."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from dwstft.data.augment import BatchAugment, CropFlipRotate, normalize

_ORDER_STREAM = 0
_AUGMENT_STREAM = 1


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys (numpy's ``SeedSequence``); stable everywhere."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> 1)


class DeviceLoader:
    """Yields (normalised float32 images (B, C, H, W), int64 labels (B,)) from device tensors
    (clips (B, C, T, H, W) for video datasets).

    The split lives on ``device`` as one uint8 tensor; each batch is gathered, normalised
    with ``mean``/``std`` (see :func:`~dwstft.data.augment.normalize`) and, if ``augment``
    is given, augmented there: a :class:`~dwstft.data.augment.BatchAugment` after the
    normalisation, a :class:`~dwstft.data.augment.CropFlipRotate` (``on_uint8``) before it.

    Order: with ``shuffle`` each epoch uses a permutation drawn on the CPU from a generator
    seeded by (``seed``, epoch), so every device and every rank sees the same permutation and
    resuming at epoch k after ``set_epoch(k)`` reproduces it; without ``shuffle`` the order
    is 0..N-1. Augmentation draws from a generator on ``device`` seeded by (``seed``, epoch,
    ``rank``). Like ``torch.utils.data.DistributedSampler``, the epoch does not advance by
    itself: call :meth:`set_epoch` before each epoch.

    Sharding: the epoch's order is padded by wrapping around to a multiple of ``world_size``
    and rank r takes positions r, r + world_size, ...; every rank gets ``num_samples``
    samples, disjoint across ranks apart from the wrapped padding.

    ``batch_size`` may be changed between epochs (a new value applies to the next
    ``iter()``); ``drop_last`` drops each rank's final incomplete batch.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        shuffle: bool = True,
        augment: BatchAugment | CropFlipRotate | None = None,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim not in (4, 5):
            raise ValueError(
                f"images must be uint8 (N, C, H, W) or (N, C, T, H, W), got {images.dtype} "
                f"with shape {tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must have shape ({images.shape[0]},) to match images, got "
                f"{tuple(labels.shape)}"
            )
        if images.shape[0] == 0:
            raise ValueError("images must hold at least one sample, got 0")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        if len(mean) != images.shape[1] or len(std) != images.shape[1] or min(std) <= 0:
            raise ValueError(
                f"mean and std must hold one value per channel ({images.shape[1]}), std "
                f"positive; got mean={tuple(mean)}, std={tuple(std)}"
            )
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device)
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.batch_size = batch_size

    @property
    def batch_size(self) -> int:
        """Samples per batch on this rank."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {value!r}")
        self._batch_size = value

    @property
    def num_samples(self) -> int:
        """Samples per epoch on this rank, wrap padding included: ceil(N / world_size)."""
        return math.ceil(self.images.shape[0] / self.world_size)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next ``iter()`` produces."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, int64 (num_samples,) on the CPU."""
        n = self.images.shape[0]
        if self.shuffle:
            generator = torch.Generator().manual_seed(
                derive_seed(self.seed, self.epoch, _ORDER_STREAM)
            )
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        total = self.num_samples * self.world_size
        padded = order.repeat(math.ceil(total / n))[:total]
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batch_size = self.batch_size
        index = self.indices().to(self.device)
        augment = self.augment if self.augment is not None and self.augment.enabled else None
        generator = torch.Generator(device=self.device).manual_seed(
            derive_seed(self.seed, self.epoch, _AUGMENT_STREAM, self.rank)
        )
        stop = len(index) - len(index) % batch_size if self.drop_last else len(index)
        before = augment if getattr(augment, "on_uint8", False) else None
        after = augment if before is None else None
        for start in range(0, stop, batch_size):
            batch = index[start : start + batch_size]
            x = self.images[batch]
            if before is not None:
                x = before(x, generator)
            x = normalize(x, self.mean, self.std)
            if after is not None:
                x = after(x, generator)
            yield x, self.labels[batch]
