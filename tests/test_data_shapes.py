"""``sample_shape`` knows each dataset's sample shape without loading it: it must agree
with what ``load_dataset`` serves (CIFAR from tiny batch files in the canonical format)."""

import pytest

from cifar_archive import write_folder
from dwstft.data import DATASET_NAMES, load_dataset, sample_shape


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_sample_shape_is_the_shape_load_dataset_serves(tmp_path, name):
    if name.startswith("cifar"):
        write_folder(tmp_path, name)
    splits = load_dataset(name, tmp_path, download=False)
    assert sample_shape(name) == tuple(splits.train_images.shape[1:])
    assert sample_shape(name) == tuple(splits.test_images.shape[1:])


def test_an_unknown_dataset_is_named():
    with pytest.raises(
        ValueError, match=r"one of cifar10, cifar100, digits, moving-digits; got 'mnist'"
    ):
        sample_shape("mnist")
