"""The bundled scikit-learn digits: scaling, fixed stratified split, dataset fields."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from dwstft.data import channel_stats, load_dataset, load_digits_splits
from dwstft.data.digits import scale_to_uint8


@pytest.fixture(scope="module")
def splits():
    return load_dataset("digits")


def test_scale_to_uint8_rounds_exactly():
    values = np.arange(17)
    want = np.floor(values * 255 / 16 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(scale_to_uint8(values.astype(np.float64)), want)
    assert scale_to_uint8(np.array([0.0, 8.0, 16.0])).tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match=r"\[0, 16\]"):
        scale_to_uint8(np.array([17.0]))


def test_shapes_dtypes_and_sizes(splits):
    assert splits.train_images.shape == (1437, 1, 8, 8)
    assert splits.test_images.shape == (360, 1, 8, 8)
    assert splits.train_images.dtype == splits.test_images.dtype == torch.uint8
    assert splits.train_labels.dtype == splits.test_labels.dtype == torch.int64
    assert (splits.name, splits.num_classes, splits.hflip) == ("digits", 10, False)
    assert int(splits.train_images.max()) == 255 and int(splits.train_images.min()) == 0


def test_splits_partition_the_dataset(splits):
    bunch = load_digits()
    full = Counter(
        (img.tobytes(), int(y))
        for img, y in zip(scale_to_uint8(bunch.images), bunch.target, strict=True)
    )
    images = torch.cat([splits.train_images, splits.test_images]).numpy()
    labels = torch.cat([splits.train_labels, splits.test_labels]).tolist()
    ours = Counter((img[0].tobytes(), y) for img, y in zip(images, labels, strict=True))
    assert sum(full.values()) == 1797 and ours == full


def test_split_is_stratified(splits):
    total = Counter(load_digits().target.tolist())
    test = Counter(splits.test_labels.tolist())
    assert sorted(test) == list(range(10))
    for label, count in total.items():
        assert abs(test[label] - 0.2 * count) <= 1


def test_split_is_deterministic():
    (a_x, a_y), (a_tx, a_ty) = load_digits_splits()
    (b_x, b_y), (b_tx, b_ty) = load_digits_splits()
    for a, b in [(a_x, b_x), (a_y, b_y), (a_tx, b_tx), (a_ty, b_ty)]:
        assert torch.equal(a, b)
    (c_x, _), _ = load_digits_splits(seed=1)
    assert not torch.equal(a_x, c_x)


def test_mean_std_are_those_of_the_training_images(splits):
    x = splits.train_images.to(torch.float64) / 255
    assert splits.mean == pytest.approx((float(x.mean()),), abs=1e-12)
    assert splits.std == pytest.approx((float(x.std(unbiased=False)),), abs=1e-12)


def test_channel_stats_per_channel():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 3, 5, 7), dtype=torch.uint8, generator=g)
    images[:, 1] //= 4
    mean, std = channel_stats(images)
    x = images.to(torch.float64) / 255
    assert mean == pytest.approx(tuple(x.mean(dim=(0, 2, 3)).tolist()), abs=1e-12)
    assert std == pytest.approx(tuple(x.std(dim=(0, 2, 3), unbiased=False).tolist()), abs=1e-12)
    with pytest.raises(ValueError, match="uint8"):
        channel_stats(images.float())


def test_invalid_test_fraction():
    with pytest.raises(ValueError, match=r"test_fraction must lie in \(0, 1\), got 1.5"):
        load_digits_splits(test_fraction=1.5)
