"""Moving digits: the clips, their labels, and clips through normalisation, augmentation,
the device loader and the training loop."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from dwstft.data import BatchAugment, DeviceLoader, load_dataset, normalize
from dwstft.data.augment import affine_warp
from dwstft.data.digits import load_digits_splits
from dwstft.data.moving_digits import (
    DIRECTIONS,
    MOVING_DIGITS_NUM_CLASSES,
    load_moving_digits_splits,
    render_clips,
)
from dwstft.models import create_model, registry
from dwstft.models.base import ImageClassifier
from dwstft.train import make_config, train
from dwstft.train.checkpoint import save_weights
from dwstft.train.evaluate import evaluate_checkpoint


@pytest.fixture(scope="module")
def splits():
    return load_moving_digits_splits()


def test_shapes_sizes_and_labels(splits):
    (train_x, train_y), (test_x, test_y) = splits
    assert train_x.shape == (2874, 1, 8, 32, 32) and test_x.shape == (720, 1, 8, 32, 32)
    assert train_x.dtype == torch.uint8 and train_y.dtype == torch.int64
    assert MOVING_DIGITS_NUM_CLASSES == 40
    for labels, digits in zip((train_y, test_y), load_digits_splits(), strict=True):
        assert labels.min() >= 0 and labels.max() < 40
        # label = digit * 4 + direction, and each digit image makes two clips
        assert torch.equal(labels // 4, digits[1].repeat_interleave(2))
        counts = torch.bincount(labels, minlength=40).view(10, 4)
        assert (counts.max(1).values - counts.min(1).values).max() <= 1  # balanced directions


def test_render_places_and_moves_the_digit_on_a_torus():
    digit = np.arange(1, 65, dtype=np.uint8).reshape(1, 8, 8)
    clips = render_clips(digit, np.array([0]), np.array([[3, 28]]), frames=3, size=32, speed=2)
    first = clips[0, 0, 0]
    assert first[3, 28] == 1 and first[3, 31] == 4 and first[3, 0] == 5  # wraps at the edge
    assert first[10, 3] == 64 and first.sum() == digit.sum()
    assert (clips[0, 0, 2] == np.roll(first, 4, axis=1)).all()  # right, 2 px per frame


def test_every_clip_is_its_first_frame_translated_along_its_direction(splits):
    (train_x, train_y), _ = splits
    for i in range(0, len(train_x), 97):
        dy, dx = DIRECTIONS[int(train_y[i]) % 4]
        frames = train_x[i, 0].numpy()
        for t in range(8):
            assert (frames[t] == np.roll(frames[0], (2 * t * dy, 2 * t * dx), axis=(0, 1))).all()
        assert frames[0].sum() > 0


def test_generation_is_deterministic_and_seeded():
    (a, _), (b, _) = load_moving_digits_splits(frames=3, clips_per_digit=1)
    (c, _), _ = load_moving_digits_splits(frames=3, clips_per_digit=1)
    (d, _), _ = load_moving_digits_splits(frames=3, clips_per_digit=1, seed=1)
    assert torch.equal(a, c) and not torch.equal(a, d)
    assert a.shape == (1437, 1, 3, 32, 32) and b.shape == (360, 1, 3, 32, 32)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"frames": 1}, "frames must be an int >= 2"),
        ({"size": 4}, "size must be an int >= 8"),
        ({"speed": 0}, "speed"),
        ({"clips_per_digit": 0}, "clips_per_digit"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_moving_digits_splits(**kwargs)


def test_load_dataset_moving_digits():
    data = load_dataset("moving-digits")
    assert data.num_classes == 40 and not data.hflip
    assert data.train_images.shape[1:] == (1, 8, 32, 32)
    x = data.train_images.double() / 255
    assert data.mean[0] == pytest.approx(float(x.mean()), rel=1e-9)
    assert data.std[0] == pytest.approx(float(x.std(unbiased=False)), rel=1e-9)


def test_normalize_clips_per_channel():
    clips = torch.randint(0, 256, (2, 3, 4, 5, 5), dtype=torch.uint8)
    out = normalize(clips, (0.1, 0.2, 0.3), (0.5, 1.0, 2.0))
    expected = (clips.float() / 255 - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1, 1)) / (
        torch.tensor([0.5, 1.0, 2.0]).view(1, 3, 1, 1, 1)
    )
    torch.testing.assert_close(out, expected)


def test_augmentation_warps_every_frame_of_a_clip_alike():
    clips = torch.rand(3, 2, 4, 16, 16)
    augment = BatchAugment(hflip=True, max_shift=0.2, max_rotation=30.0)
    out = augment(clips, torch.Generator().manual_seed(5))
    flip, shift, angle = augment.sample(3, 16, 16, torch.Generator().manual_seed(5))
    for t in range(4):
        torch.testing.assert_close(out[:, :, t], affine_warp(clips[:, :, t], flip, shift, angle))
    flipped = BatchAugment(max_shift=0.0, max_rotation=0.0, flip_prob=1.0)
    torch.testing.assert_close(flipped(clips, torch.Generator()), clips.flip(-1))


def test_device_loader_yields_normalised_clips():
    clips = torch.randint(0, 256, (10, 1, 3, 8, 8), dtype=torch.uint8)
    loader = DeviceLoader(clips, torch.arange(10), 4, (0.5,), (0.25,), shuffle=False)
    batches = list(loader)
    assert [x.shape for x, _ in batches] == [(4, 1, 3, 8, 8), (4, 1, 3, 8, 8), (2, 1, 3, 8, 8)]
    torch.testing.assert_close(batches[0][0], (clips[:4].float() / 255 - 0.5) / 0.25)


class TinyVideoNet(ImageClassifier):
    """Conv3d 3×3×3 → BN → ReLU → global pool → linear: fast enough for a test run."""

    def __init__(self, num_classes: int = 40, in_chans: int = 1) -> None:
        super().__init__(4, num_classes)
        self.features = nn.Sequential(
            nn.Conv3d(in_chans, 4, 3, stride=(1, 4, 4), padding=1), nn.BatchNorm3d(4), nn.ReLU()
        )

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3, 4))
        return x if pre_logits else self.head(x)


def test_train_and_eval_run_on_clips(tmp_path, monkeypatch):
    monkeypatch.setitem(registry._MODELS, "tiny_video_test_net", TinyVideoNet)
    config = make_config(
        "fast",
        model="tiny_video_test_net",
        dataset="moving-digits",
        output=str(tmp_path / "run"),
        epochs=1,
        warmup_epochs=0.0,
        batch_size=128,
        device="cpu",
    )
    result = train(config)
    assert len(result.history) == 1 and 0 <= result.final_acc <= 1
    report = evaluate_checkpoint(tmp_path / "run" / "best.safetensors", device="cpu")
    assert report["dataset"] == "moving-digits" and report["count"] == 720


@pytest.mark.parametrize("command", ["train", "eval"])
def test_channels_last_with_clips_is_a_one_line_error(tmp_path, command):
    if command == "train":
        argv = ["train", "--model", "video_stft_tiny", "--output", str(tmp_path / "run")]
    else:
        weights = tmp_path / "best.safetensors"
        model = create_model("video_stft_tiny", num_classes=40, in_chans=1)
        save_weights(weights, model.state_dict(), {"model": "video_stft_tiny"})
        argv = ["eval", "--checkpoint", str(weights)]
    argv += ["--dataset", "moving-digits", "--channels-last", "--device", "cpu"]
    proc = subprocess.run(
        [sys.executable, "-m", "dwstft.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert f"dwstft {command}: error: --channels-last needs images (N, C, H, W)" in lines[0]
