"""``dwstft bench pipeline``: training throughput with the on-device data pipeline against a
conventional per-image ``torch.utils.data.DataLoader``, side by side.

Both feed the same model the same kind of batch (CIFAR-shaped uint8 images, normalised,
randomly flipped, shifted by up to ±10 % and rotated by up to ±20°) to the same training
step (forward, cross-entropy, backward, SGD step):

- ``on-device``: :class:`~dwstft.data.DeviceLoader` + :class:`~dwstft.data.BatchAugment`,
  the training loop's pipeline: the split is one tensor on the device; each batch is
  gathered, normalised and warped as a whole (one ``grid_sample``).
- ``DataLoader (w workers)``: a ``Dataset`` whose ``__getitem__`` augments one PIL image
  (mirror, ``Image.rotate`` with translation, bilinear) and normalises it, collated by a
  ``DataLoader`` with ``num_workers`` w (0: in the training process).

No real CIFAR is needed: the images are random uint8 with a fixed seed (the pipeline's cost
does not depend on pixel values). The data-only column times producing batches alone.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dwstft.bench.measure import machine_description
from dwstft.data import BatchAugment, DeviceLoader

Batch = tuple[torch.Tensor, torch.Tensor]
#: Per-channel statistics used for normalisation (CIFAR-10's; exact values do not matter).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def fabricate_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random CIFAR-shaped data: uint8 images (n, 3, 32, 32) and int64 labels (n,) in [0, 10)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return images, torch.randint(0, 10, (n,), generator=g)


class PerImageAugmentDataset(Dataset):
    """One image at a time, the way torchvision-style pipelines do it.

    ``__getitem__`` returns (float32 image (3, 32, 32), label): a PIL image mirrored with
    probability 1/2, rotated uniformly in ±``max_rotation`` degrees and translated by up to
    ±``max_shift`` of its size (bilinear, zero fill), then scaled to [0, 1] and normalised
    per channel. Random numbers come from torch's generator, which ``DataLoader`` seeds
    differently in every worker.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        max_shift: float = 0.1,
        max_rotation: float = 20.0,
    ) -> None:
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = labels
        self.max_shift = max_shift
        self.max_rotation = max_rotation
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = Image.fromarray(self.images[index])
        flip, sx, sy, angle = torch.rand(4).tolist()
        if flip < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        w, h = image.size
        shift = ((2 * sx - 1) * self.max_shift * w, (2 * sy - 1) * self.max_shift * h)
        angle = (2 * angle - 1) * self.max_rotation
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR, translate=shift)
        x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
        return (x - self.mean) / self.std, self.labels[index]


@dataclass
class PipelineResult:
    """One pipeline: training images/s (data + step) and data-only images/s."""

    name: str
    train_images_per_s: float
    data_images_per_s: float


def _forever(make: Callable[[int], Iterator[Batch]]) -> Iterator[Batch]:
    """Batches from ``make(epoch)`` for epoch 0, 1, 2, ... without end."""
    for epoch in itertools.count():
        yield from make(epoch)


def _on_device(
    images: torch.Tensor, labels: torch.Tensor, batch: int, device: torch.device
) -> Iterator[Batch]:
    loader = DeviceLoader(
        images,
        labels,
        batch,
        MEAN,
        STD,
        augment=BatchAugment(hflip=True),
        drop_last=True,
        device=device,
    )

    def epoch_batches(epoch: int) -> Iterator[Batch]:
        loader.set_epoch(epoch)
        return iter(loader)

    return _forever(epoch_batches)


def _data_loader(
    images: torch.Tensor, labels: torch.Tensor, batch: int, workers: int, device: torch.device
) -> Iterator[Batch]:
    cuda = device.type == "cuda"
    loader = DataLoader(
        PerImageAugmentDataset(images, labels),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=cuda,
    )
    to_device = (
        (x.to(device, non_blocking=cuda), y.to(device, non_blocking=cuda))
        for x, y in _forever(lambda _: iter(loader))
    )
    return to_device


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> Callable[[Batch], None]:
    def step(batch: Batch) -> None:
        x, y = batch
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def run_pipeline_benchmark(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch: int = 64,
    batches: int = 30,
    rounds: int = 3,
    workers: Sequence[int] = (0, 2),
    device: str | torch.device = "cpu",
) -> list[PipelineResult]:
    """Images/s of each pipeline, training ``model`` on ``device``, measured side by side.

    Each of ``rounds`` rounds times ``batches // rounds`` training steps of every pipeline
    in turn, in alternating order (after two warm-up steps each), so a change in machine
    load hits all of them alike; then the same number of batches is drawn without training
    (data only; a DataLoader with workers may start that phase with up to 2 batches per
    worker prefetched). Totals over the rounds give images/s.
    """
    if batches < rounds:
        raise ValueError(f"batches must be >= rounds ({rounds}), got {batches}")
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    pipelines: dict[str, Iterator[Batch]] = {"on-device": _on_device(images, labels, batch, device)}
    for w in workers:
        pipelines[f"DataLoader ({w} workers)"] = _data_loader(images, labels, batch, w, device)
    model.to(device).train()
    step = _train_step(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    for it in pipelines.values():
        for _ in range(2):
            step(next(it))
    per_round = batches // rounds
    train_s = dict.fromkeys(pipelines, 0.0)
    data_s = dict.fromkeys(pipelines, 0.0)
    for r in range(rounds):
        order = list(pipelines.items())
        for name, it in order if r % 2 == 0 else order[::-1]:
            sync()
            start = time.perf_counter()
            for _ in range(per_round):
                step(next(it))
            sync()
            train_s[name] += time.perf_counter() - start
        for name, it in order:
            sync()
            start = time.perf_counter()
            for _ in range(per_round):
                next(it)
            sync()
            data_s[name] += time.perf_counter() - start
    n = per_round * rounds * batch
    return [PipelineResult(name, n / train_s[name], n / data_s[name]) for name in pipelines]


def format_pipeline_table(
    results: Sequence[PipelineResult],
    model_name: str,
    batch: int,
    n_images: int,
    device: str | torch.device = "cpu",
) -> str:
    """A Markdown table of the results with ratios to the on-device pipeline."""
    base = results[0]
    lines = [
        f"Training throughput, {model_name}, batch {batch}, {n_images} random CIFAR-shaped "
        f"images; {machine_description(torch.device(device))}",
        "",
        "| pipeline | train images/s | vs on-device | data-only images/s |",
        "|---|---:|---:|---:|",
    ]
    for r in results:
        ratio = r.train_images_per_s / base.train_images_per_s
        lines.append(
            f"| {r.name} | {r.train_images_per_s:,.0f} | {ratio:.2f}x | "
            f"{r.data_images_per_s:,.0f} |"
        )
    best_loader = max(results[1:], key=lambda r: r.train_images_per_s, default=None)
    if best_loader is not None:
        speedup = base.train_images_per_s / best_loader.train_images_per_s
        name = best_loader.name
        lines += ["", f"on-device pipeline: {speedup:.2f}x the best DataLoader ({name})"]
    return "\n".join(lines)
