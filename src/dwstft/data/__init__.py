"""Datasets (CIFAR-10/100, scikit-learn digits, moving-digits clips), on-device augmentation
and loading.

This package imports nothing else from :mod:`dwstft`.
"""

from dwstft.data.augment import BatchAugment, affine_warp, normalize
from dwstft.data.cifar import (
    ALLOWED_GLOBALS,
    CIFAR10_MD5,
    CIFAR10_URL,
    CIFAR100_MD5,
    CIFAR100_URL,
    CIFAR_SPECS,
    CifarSpec,
    CorruptArchiveError,
    DatasetNotFoundError,
    RestrictedUnpickler,
    UnsafePickleError,
    load_cifar,
)
from dwstft.data.datasets import (
    DATASET_NAMES,
    DEFAULT_DATA_DIR,
    SAMPLE_SHAPES,
    DatasetSplits,
    channel_stats,
    load_dataset,
    sample_shape,
)
from dwstft.data.digits import load_digits_splits
from dwstft.data.loader import DeviceLoader
from dwstft.data.moving_digits import load_moving_digits_splits

__all__ = [
    "ALLOWED_GLOBALS",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "CIFAR100_MD5",
    "CIFAR100_URL",
    "CIFAR_SPECS",
    "DATASET_NAMES",
    "DEFAULT_DATA_DIR",
    "SAMPLE_SHAPES",
    "BatchAugment",
    "CifarSpec",
    "CorruptArchiveError",
    "DatasetNotFoundError",
    "DatasetSplits",
    "DeviceLoader",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "affine_warp",
    "channel_stats",
    "load_cifar",
    "load_dataset",
    "load_digits_splits",
    "load_moving_digits_splits",
    "normalize",
    "sample_shape",
]
