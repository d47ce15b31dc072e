"""The baseline recipe's augmentation (torchvision's RandomCrop(padding) + RandomHorizontalFlip
+ RandomRotation on uint8 images) against independent references of each transform.

References: NumPy zero padding + slicing for the crop, NumPy reversal for the flip, and for
the rotation Pillow's own ``Image.rotate`` (what torchvision's RandomRotation calls on the
PIL images weiaicunzai/pytorch-cifar100 trains on) and a NumPy loop over the textbook map.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from dwstft.data import DeviceLoader
from dwstft.data.augment import CropFlipRotate, crop_flip_rotate, pil_rotation_map

SIZES = [(32, 32), (8, 8), (16, 24), (7, 9)]


def images(n: int, c: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


def ours(x: np.ndarray, offsets, flips, angles, padding: int) -> np.ndarray:
    out = crop_flip_rotate(
        torch.from_numpy(x),
        torch.tensor(offsets, dtype=torch.int64).view(-1, 2),
        torch.tensor(flips).view(-1),
        torch.tensor(angles, dtype=torch.float64).view(-1),
        padding,
    )
    assert out.dtype == torch.uint8
    return out.numpy()


def numpy_crop(image: np.ndarray, offset: tuple[int, int], padding: int) -> np.ndarray:
    """RandomCrop((H, W), padding) with the window's corner at ``offset`` in the padded image."""
    c, h, w = image.shape
    padded = np.zeros((c, h + 2 * padding, w + 2 * padding), dtype=image.dtype)
    padded[:, padding : padding + h, padding : padding + w] = image
    i, j = offset
    return padded[:, i : i + h, j : j + w]


def pil_rotate(image: np.ndarray, angle: float) -> np.ndarray:
    """RandomRotation's defaults on a PIL image: nearest, no expansion, centre, fill 0."""
    planes = [
        np.asarray(Image.fromarray(plane).rotate(angle, resample=Image.NEAREST, fillcolor=0))
        for plane in image
    ]
    return np.stack(planes)


def textbook_rotate(image: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Counter-clockwise rotation about (W/2, H/2) sampling at pixel centres, nearest (floor),
    in exact real arithmetic up to float64; also returns each output pixel's distance to the
    nearest pixel edge of its sampling position."""
    _, h, w = image.shape
    t = math.radians(angle)
    out = np.zeros_like(image)
    margin = np.zeros((h, w))
    for r in range(h):
        for col in range(w):
            dx, dy = col + 0.5 - w / 2, r + 0.5 - h / 2
            x = math.cos(t) * dx - math.sin(t) * dy + w / 2
            y = math.sin(t) * dx + math.cos(t) * dy + h / 2
            margin[r, col] = min(abs(x - round(x)), abs(y - round(y)))
            if 0 <= x < w and 0 <= y < h:
                out[:, r, col] = image[:, math.floor(y), math.floor(x)]
    return out, margin


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize("offset", [(0, 0), (4, 4), (8, 8), (0, 8), (3, 6), (7, 1)])
def test_crop_matches_zero_padding_and_slicing(h, w, offset):
    x = images(1, 3, h, w)
    assert np.array_equal(ours(x, offset, False, 0.0, 4)[0], numpy_crop(x[0], offset, 4))


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_flip_mirrors_columns(h, w):
    x = images(1, 3, h, w, seed=1)
    assert np.array_equal(ours(x, (4, 4), True, 0.0, 4)[0], x[0, :, :, ::-1])


ANGLES = [0.0, 15.0, -15.0, 7.3, -11.9, 3.14159, 14.999, -0.2, 90.0, 180.0, 45.0, -123.4]


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_rotation_reads_the_pixels_pillow_reads(h, w):
    x = images(len(ANGLES), 2, h, w, seed=2)
    out = ours(x, [(4, 4)] * len(ANGLES), [False] * len(ANGLES), ANGLES, 4)
    for k, angle in enumerate(ANGLES):
        assert np.array_equal(out[k], pil_rotate(x[k], angle)), angle


def test_rotation_matches_pillow_on_many_random_angles():
    n = 512
    x = images(n, 1, 32, 32, seed=3)
    angles = np.random.default_rng(4).uniform(-15, 15, n)
    out = ours(x, [(4, 4)] * n, [False] * n, angles.tolist(), 4)
    same = [np.array_equal(out[k], pil_rotate(x[k], float(angles[k]))) for k in range(n)]
    assert all(same), f"{same.count(False)} of {n} differ"


@pytest.mark.parametrize("angle", [12.5, -9.0, 15.0])
def test_rotation_is_the_textbook_map_up_to_pillows_fixed_point(angle):
    # Pillow evaluates the map in 16.16 fixed point; pixels whose sampling position lies
    # within that rounding (< 1e-3 px for 32×32) of a pixel edge may take the neighbour.
    x = images(1, 1, 32, 32, seed=5)
    expected, margin = textbook_rotate(x[0], angle)
    differ = ours(x, (4, 4), False, angle, 4)[0, 0] != expected[0]
    assert (margin[differ] < 1e-3).all()
    assert differ.sum() <= 2


def test_rotation_direction_and_fill():
    x = np.zeros((1, 1, 9, 9), dtype=np.uint8)
    x[..., 4, 8] = 200  # a dot right of the centre
    y = ours(x, (4, 4), False, 90.0, 4)
    assert y[0, 0, 0, 4] == 200 and y.sum() == 200  # counter-clockwise: now above it
    corners = ours(np.full((1, 1, 32, 32), 255, np.uint8), (4, 4), False, 15.0, 4)[0, 0]
    assert corners[0, 0] == corners[-1, -1] == 0 and corners[16, 16] == 255


def test_rotation_map_at_zero_is_the_identity():
    row, col = pil_rotation_map(torch.tensor([0.0]), 5, 7)
    assert torch.equal(row[0], torch.arange(5).view(5, 1).expand(5, 7))
    assert torch.equal(col[0], torch.arange(7).view(1, 7).expand(5, 7))


@pytest.mark.parametrize(("h", "w"), [(32, 32), (16, 24)])
def test_whole_pipeline_in_torchvision_order(h, w):
    n = 12
    rng = np.random.default_rng(6)
    x = images(n, 3, h, w, seed=7)
    offsets = rng.integers(0, 9, (n, 2)).tolist()
    flips = (rng.random(n) < 0.5).tolist()
    angles = rng.uniform(-15, 15, n).tolist()
    out = ours(x, offsets, flips, angles, 4)
    for k in range(n):
        step = numpy_crop(x[k], tuple(offsets[k]), 4)
        step = step[:, :, ::-1] if flips[k] else step
        assert np.array_equal(out[k], pil_rotate(np.ascontiguousarray(step), angles[k])), k


def test_sampled_parameters_follow_torchvision_ranges():
    augment = CropFlipRotate(padding=4, max_rotation=15.0)
    offsets, flip, angle = augment.sample(20000, torch.Generator().manual_seed(0))
    counts = torch.bincount(offsets.flatten(), minlength=9)
    assert counts.numel() == 9 and (counts > 0.9 * 40000 / 9).all()  # uniform on 0..8
    assert 0.48 < flip.float().mean() < 0.52
    assert angle.abs().max() <= 15.0 and angle.abs().max() > 14.99 and angle.dtype.is_floating_point
    _, no_flip, _ = CropFlipRotate(hflip=False).sample(100, torch.Generator())
    assert not no_flip.any()


def test_same_seed_same_output_and_disabled_is_identity():
    x = torch.from_numpy(images(8, 3, 32, 32, seed=8))
    augment = CropFlipRotate()
    a = augment(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, augment(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(6)))
    off = CropFlipRotate(padding=0, hflip=False, max_rotation=0.0)
    assert not off.enabled and off(x, torch.Generator()) is x


def test_loader_augments_before_normalising():
    # Zero fill happens on the uint8 image, so it comes out as (0 - mean) / std, as after
    # torchvision's ToTensor + Normalize; the padded border of a forced corner crop shows it.
    x = torch.full((4, 3, 8, 8), 200, dtype=torch.uint8)
    mean, std = (0.5, 0.25, 0.75), (0.2, 0.1, 0.3)
    augment = CropFlipRotate(padding=2, hflip=False, max_rotation=0.0)
    loader = DeviceLoader(x, torch.zeros(4, dtype=torch.long), 4, mean, std, augment=augment)
    batch, _ = next(iter(loader))
    fill = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)]).view(1, 3, 1, 1)
    image = torch.tensor([(200 / 255 - m) / s for m, s in zip(mean, std, strict=True)])
    is_fill = torch.isclose(batch, fill.expand_as(batch))
    is_image = torch.isclose(batch, image.view(1, 3, 1, 1).expand_as(batch))
    assert (is_fill | is_image).all() and is_fill.any() and is_image.any()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"padding": -1}, r"padding must be an int >= 0"),
        ({"padding": 2.5}, r"padding must be an int >= 0"),
        ({"max_rotation": 200.0}, r"max_rotation must lie in \[0, 180\]"),
        ({"flip_prob": -0.1}, r"flip_prob must lie in \[0, 1\]"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CropFlipRotate(**kwargs)


def test_rejects_float_images():
    with pytest.raises(ValueError, match="images must be uint8"):
        CropFlipRotate()(torch.zeros(1, 3, 4, 4), torch.Generator())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x = torch.from_numpy(images(16, 3, 32, 32, seed=9))
    offsets = torch.randint(0, 9, (16, 2))
    flip = torch.rand(16) < 0.5
    angle = torch.rand(16, dtype=torch.float64) * 30 - 15
    cpu = crop_flip_rotate(x, offsets, flip, angle, 4)
    cuda = crop_flip_rotate(x.cuda(), offsets.cuda(), flip.cuda(), angle.cuda(), 4)
    assert torch.equal(cuda.cpu(), cpu)
