"""scikit-learn's bundled 8×8 handwritten digits (UCI optdigits test set; no download).

1,797 grayscale images with integer values 0..16 in 10 classes, split once into a fixed,
seeded, stratified 80/20 train/test split (1,437 / 360 images).
"""

from __future__ import annotations

import numpy as np
import torch

from dwstft.errors import require

DIGITS_TEST_FRACTION = 0.2
DIGITS_SEED = 0
DIGITS_NUM_CLASSES = 10

Split = tuple[torch.Tensor, torch.Tensor]


def scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map integer digit intensities 0..16 to uint8 0..255: ``round(v * 255 / 16)``.

    Computed in integer arithmetic, rounding halves up (8 → 128), so it is exact.
    """
    if values.min() < 0 or values.max() > 16:
        raise ValueError(
            f"digit intensities must lie in [0, 16], got [{values.min()}, {values.max()}]"
        )
    ints = values.astype(np.int64)
    return ((ints * 255 + 8) // 16).astype(np.uint8)


def load_digits_splits(
    test_fraction: float = DIGITS_TEST_FRACTION, seed: int = DIGITS_SEED
) -> tuple[Split, Split]:
    """Load the digits as ((train_x, train_y), (test_x, test_y)).

    Images are uint8 tensors (N, 1, 8, 8) scaled to 0..255, labels int64 (N,) in [0, 10).
    The split is stratified by class and fixed by ``seed`` (scikit-learn's
    ``train_test_split`` with ``random_state=seed``), so it is the same on every machine.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    require("sklearn", "data", "the digits dataset (shipped inside scikit-learn)")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = scale_to_uint8(bunch.images).reshape(-1, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return (
        (torch.from_numpy(train_x), torch.from_numpy(train_y)),
        (torch.from_numpy(test_x), torch.from_numpy(test_y)),
    )
