"""Normalisation and the one-warp batched augmentation."""

from __future__ import annotations

import pytest
import torch

from dwstft.data import BatchAugment, affine_warp, normalize


def images(n: int = 4, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g).to(torch.float32)


def warp(x: torch.Tensor, flip=False, shift=(0.0, 0.0), angle=0.0, padding_mode="zeros"):
    n = x.shape[0]
    return affine_warp(
        x,
        torch.full((n,), flip),
        torch.tensor(shift, dtype=torch.float32).expand(n, 2),
        torch.full((n,), float(angle)),
        padding_mode,
    )


def test_normalize_per_channel():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    y = normalize(x, (0.0, 0.1, 0.5), (1.0, 0.2, 0.25))
    assert y.dtype == torch.float32 and y.shape == x.shape
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor([0.0, 0.5, 2.0]))


@pytest.mark.parametrize(
    ("x", "mean", "std", "match"),
    [
        (torch.zeros(1, 3, 2, 2), (0,) * 3, (1,) * 3, "uint8"),
        (torch.zeros(1, 3, 2, 2, dtype=torch.uint8), (0,) * 2, (1,) * 3, r"per channel \(3\)"),
        (torch.zeros(1, 1, 2, 2, dtype=torch.uint8), (0,), (0,), "std must be positive"),
    ],
)
def test_normalize_rejects(x, mean, std, match):
    with pytest.raises(ValueError, match=match):
        normalize(x, mean, std)


def test_forced_flip_is_exact_mirror():
    x = images()
    augment = BatchAugment(hflip=True, max_shift=0.0, max_rotation=0.0, flip_prob=1.0)
    assert torch.equal(augment(x, torch.Generator().manual_seed(0)), x.flip(-1))


def test_disabled_is_identity():
    x = images()
    g = torch.Generator().manual_seed(0)
    for augment in [
        BatchAugment(hflip=False, max_shift=0.0, max_rotation=0.0, flip_prob=1.0),
        BatchAugment(hflip=True, max_shift=0.0, max_rotation=0.0, flip_prob=0.0),
    ]:
        assert not augment.enabled
        assert augment(x, g) is x


# At the project's sizes (CIFAR 32×32, digits 8×8) these warps are bit-exact; elsewhere they
# are exact up to float32 rounding of the sampling grid (values here are 0..255).
SIZES = [((32, 32), 0.0), ((8, 8), 0.0), ((16, 32), 1e-3), ((28, 28), 1e-3), ((16, 24), 1e-3)]


@pytest.mark.parametrize(("size", "atol"), SIZES)
def test_identity_and_flip_reproduce_pixels(size, atol):
    x = images(4, 3, *size)
    torch.testing.assert_close(warp(x), x, atol=atol, rtol=0)
    torch.testing.assert_close(warp(x, flip=True), x.flip(-1), atol=atol, rtol=0)


@pytest.mark.parametrize(("size", "atol"), SIZES)
def test_integer_shift_moves_pixels_exactly(size, atol):
    x = images(4, 3, *size)
    y = warp(x, shift=(3.0, -2.0))  # 3 px right, 2 px up
    torch.testing.assert_close(y[..., :-2, 3:], x[..., 2:, :-3], atol=atol, rtol=0)
    assert y[..., :3].abs().max() <= atol and y[..., -2:, :].abs().max() <= atol


def test_border_padding_repeats_the_edge():
    x = images()
    y = warp(x, shift=(3.0, 0.0), padding_mode="border")
    assert torch.equal(y[..., :3], x[..., :1].expand_as(y[..., :3]))


def test_quarter_turn_matches_rot90():
    x = images()
    torch.testing.assert_close(warp(x, angle=90.0), torch.rot90(x, 1, (-2, -1)), atol=1e-3, rtol=0)
    torch.testing.assert_close(
        warp(x, angle=-90.0), torch.rot90(x, -1, (-2, -1)), atol=1e-3, rtol=0
    )


def test_quarter_turn_of_non_square_image():
    # 90° about the centre maps the central 16×16 square of a 16×24 image onto itself.
    x = images(h=16, w=24)
    y = warp(x, angle=90.0)
    torch.testing.assert_close(
        y[..., 4:20], torch.rot90(x[..., 4:20], 1, (-2, -1)), atol=1e-3, rtol=0
    )
    torch.testing.assert_close(warp(x, angle=180.0), x.flip(-2, -1), atol=1e-3, rtol=0)


def test_rotation_leaves_a_centred_disc_unchanged():
    r = torch.arange(32, dtype=torch.float32) - 15.5
    blob = torch.exp(-(r.view(-1, 1) ** 2 + r.view(1, -1) ** 2) / 40).expand(2, 1, 32, 32)
    for angle in (13.0, 37.0, -20.0):
        torch.testing.assert_close(warp(blob, angle=angle), blob, atol=1e-2, rtol=0)
    assert (warp(blob, shift=(2.5, 0.0)) - blob).abs().max() > 0.05


def test_rotation_direction_is_counter_clockwise():
    x = torch.zeros(1, 1, 9, 9)
    x[..., 4, 8] = 1.0  # a dot right of the centre
    y = warp(x, angle=90.0)
    assert y[0, 0, 0, 4] == pytest.approx(1.0, abs=1e-4)  # ends up above it


def test_batch_applies_each_images_own_parameters():
    x = images(n=5)
    flip = torch.tensor([True, False, True, False, True])
    shift = torch.tensor([[1.5, -0.5], [0.0, 2.0], [-3.2, 3.2], [0.3, 0.0], [0.0, 0.0]])
    angle = torch.tensor([0.0, 20.0, -17.5, 5.0, 90.0])
    batched = affine_warp(x, flip, shift, angle)
    for i in range(5):
        one = affine_warp(x[i : i + 1], flip[i : i + 1], shift[i : i + 1], angle[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], one)


def test_same_seed_same_output():
    x = images(n=8)
    augment = BatchAugment()
    a = augment(x, torch.Generator().manual_seed(5))
    b = augment(x, torch.Generator().manual_seed(5))
    c = augment(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype


def test_sampled_parameters_cover_the_configured_ranges():
    augment = BatchAugment(max_shift=0.1, max_rotation=20.0)
    flip, shift, angle = augment.sample(20000, 32, 48, torch.Generator().manual_seed(0))
    assert 0.48 < flip.float().mean() < 0.52
    assert shift[:, 0].abs().max() <= 4.8 and shift[:, 0].abs().max() > 4.7  # 0.1 × width 48
    assert shift[:, 1].abs().max() <= 3.2 and shift[:, 1].abs().max() > 3.1  # 0.1 × height 32
    assert angle.abs().max() <= 20.0 and angle.abs().max() > 19.9
    no_flip, _, _ = BatchAugment(hflip=False).sample(100, 32, 32, torch.Generator())
    assert not no_flip.any()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_shift": 1.0}, r"max_shift must lie in \[0, 1\)"),
        ({"max_rotation": -1.0}, r"max_rotation must lie in \[0, 180\]"),
        ({"flip_prob": 1.5}, r"flip_prob must lie in \[0, 1\]"),
        ({"padding_mode": "wrap"}, "padding_mode must be one of"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchAugment(**kwargs)


def test_rejects_uint8_input():
    with pytest.raises(ValueError, match="x must be float"):
        BatchAugment()(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.Generator())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_a_cuda_generator():
    x = images(n=16).cuda()
    augment = BatchAugment()
    a = augment(x, torch.Generator(device="cuda").manual_seed(1))
    b = augment(x, torch.Generator(device="cuda").manual_seed(1))
    assert a.device.type == "cuda" and torch.equal(a, b)
    forced = BatchAugment(max_shift=0.0, max_rotation=0.0, flip_prob=1.0)
    assert torch.equal(forced(x, torch.Generator(device="cuda")), x.flip(-1))
