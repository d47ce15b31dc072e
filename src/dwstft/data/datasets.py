"""One entry point for every dataset: :func:`load_dataset` → :class:`DatasetSplits`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dwstft.data.cifar import CIFAR_SPECS, load_cifar
from dwstft.data.digits import DIGITS_NUM_CLASSES, load_digits_splits
from dwstft.data.moving_digits import (
    MOVING_DIGITS_FRAMES,
    MOVING_DIGITS_NUM_CLASSES,
    MOVING_DIGITS_SIZE,
    load_moving_digits_splits,
)

DATASET_NAMES = ("cifar10", "cifar100", "digits", "moving-digits")
DEFAULT_DATA_DIR = Path("~/.cache/dwstft/data")
#: One sample's shape per dataset, known without loading it: images (C, H, W), clips
#: (C, T, H, W).
SAMPLE_SHAPES: dict[str, tuple[int, ...]] = {
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "digits": (1, 8, 8),
    "moving-digits": (1, MOVING_DIGITS_FRAMES, MOVING_DIGITS_SIZE, MOVING_DIGITS_SIZE),
}


def sample_shape(name: str) -> tuple[int, ...]:
    """The shape of one of ``name``'s samples as :func:`load_dataset` serves it: (C, H, W)
    for images, (C, T, H, W) for clips; nothing is loaded."""
    if name not in SAMPLE_SHAPES:
        raise ValueError(f"name must be one of {', '.join(DATASET_NAMES)}; got {name!r}")
    return SAMPLE_SHAPES[name]


@dataclass
class DatasetSplits:
    """A dataset's train and test splits with what training needs to know about them.

    Images are uint8 tensors (N, C, H, W) with values 0..255 — or clips (N, C, T, H, W)
    for video datasets — and labels int64 (N,) in [0, num_classes). ``mean`` and ``std``
    are per-channel statistics of the training images scaled to [0, 1] (population std).
    ``hflip`` says whether a horizontal flip preserves the label (natural images: yes;
    digits and moving digits: no).
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of uint8 images (N, C, H, W) or clips
    (N, C, T, H, W), scaled to [0, 1].

    Exact: computed in float64 from a 256-bin histogram per channel, so no float copy of
    the images is made.
    """
    if images.dtype != torch.uint8 or images.ndim not in (4, 5):
        raise ValueError(
            f"images must be uint8 (N, C, H, W) or (N, C, T, H, W), got {images.dtype} with "
            f"shape {tuple(images.shape)}"
        )
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).to(torch.float64)
        p = counts / counts.sum()
        mean = float((p * values).sum())
        var = float((p * (values - mean) ** 2).sum())
        means.append(mean)
        stds.append(var**0.5)
    return tuple(means), tuple(stds)


def load_dataset(
    name: str, data_dir: str | Path | None = None, download: bool = True
) -> DatasetSplits:
    """Load ``name`` ("cifar10", "cifar100", "digits" or "moving-digits") as
    :class:`DatasetSplits`.

    ``data_dir`` is where CIFAR is looked for (default ``~/.cache/dwstft/data``; see
    :func:`dwstft.data.cifar.prepare_cifar` for the lookup order) and ``download`` whether
    it may be fetched; both are ignored for the bundled digits and the clips made from them
    (:mod:`dwstft.data.moving_digits`).
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"name must be one of {', '.join(DATASET_NAMES)}; got {name!r}")
    if name == "digits":
        (train_x, train_y), (test_x, test_y) = load_digits_splits()
        num_classes, hflip = DIGITS_NUM_CLASSES, False
    elif name == "moving-digits":
        (train_x, train_y), (test_x, test_y) = load_moving_digits_splits()
        num_classes, hflip = MOVING_DIGITS_NUM_CLASSES, False  # a flip reverses the motion
    else:
        root = Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR).expanduser()
        (train_x, train_y), (test_x, test_y) = load_cifar(name, root, download)
        num_classes, hflip = CIFAR_SPECS[name].num_classes, True
    mean, std = channel_stats(train_x)
    return DatasetSplits(
        name=name,
        train_images=train_x,
        train_labels=train_y,
        test_images=test_x,
        test_labels=test_y,
        num_classes=num_classes,
        mean=mean,
        std=std,
        hflip=hflip,
    )
