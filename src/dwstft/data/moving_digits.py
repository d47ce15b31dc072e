"""Moving digits: a small offline video task built from the embedded scikit-learn digits.

Each clip shows one 8×8 digit moving across a 32×32 canvas for T frames at a constant speed
in one of four directions (right, left, down, up). The label is ``digit * 4 + direction``
(40 classes), so both the digit and its motion must be recognised.

A single frame cannot tell the direction: the canvas is a torus (the digit leaves one edge
and re-enters at the opposite one, ``numpy.roll``) and the starting position is uniform on
it, so every frame's digit position is uniform whatever the direction. Only the change
between frames carries the motion.

Clips are generated deterministically from a seed; the train and test clips are made from
the digits' fixed train and test split (:func:`~dwstft.data.digits.load_digits_splits`), so
test clips show digit images never seen in training. Every digit image is used for
``clips_per_digit`` clips, and directions cycle through the four within every digit
class, so each (digit, direction) class holds the same number of clips up to one.
"""

from __future__ import annotations

import numpy as np
import torch

from dwstft.data.digits import load_digits_splits

#: (dy, dx) per direction: right, left, down, up.
DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))
DIRECTION_NAMES = ("right", "left", "down", "up")
MOVING_DIGITS_NUM_CLASSES = 10 * len(DIRECTIONS)
MOVING_DIGITS_SEED = 0
#: Frames per clip and canvas side (pixels) of the dataset ``load_dataset`` serves.
MOVING_DIGITS_FRAMES = 8
MOVING_DIGITS_SIZE = 32

Split = tuple[torch.Tensor, torch.Tensor]


def render_clips(
    digits: np.ndarray,
    directions: np.ndarray,
    starts: np.ndarray,
    frames: int,
    size: int,
    speed: int,
) -> np.ndarray:
    """uint8 clips (N, 1, frames, size, size): ``digits`` (N, 8, 8) placed with their top-left
    pixel at ``starts`` (N, 2: row, column) on a toroidal canvas in frame 0 and moved by
    ``speed`` pixels per frame along ``DIRECTIONS[directions]``."""
    count, height, width = digits.shape
    clips = np.zeros((count, 1, frames, size, size), dtype=np.uint8)
    for i in range(count):
        canvas = np.zeros((size, size), dtype=np.uint8)
        canvas[:height, :width] = digits[i]
        dy, dx = DIRECTIONS[directions[i]]
        for t in range(frames):
            shift = (starts[i, 0] + dy * speed * t, starts[i, 1] + dx * speed * t)
            clips[i, 0, t] = np.roll(canvas, shift, axis=(0, 1))
    return clips


def _make_split(
    images: torch.Tensor,
    labels: torch.Tensor,
    rng: np.random.Generator,
    clips_per_digit: int,
    frames: int,
    size: int,
    speed: int,
) -> Split:
    digits = np.repeat(images[:, 0].numpy(), clips_per_digit, axis=0)
    classes = np.repeat(labels.numpy(), clips_per_digit)
    directions = np.zeros(len(digits), dtype=np.int64)
    for digit in np.unique(classes):
        members = np.flatnonzero(classes == digit)
        directions[members] = np.arange(len(members)) % len(DIRECTIONS)
    starts = rng.integers(0, size, size=(len(digits), 2))
    clips = render_clips(digits, directions, starts, frames, size, speed)
    target = classes * len(DIRECTIONS) + directions
    return torch.from_numpy(clips), torch.from_numpy(target.astype(np.int64))


def load_moving_digits_splits(
    frames: int = MOVING_DIGITS_FRAMES,
    size: int = MOVING_DIGITS_SIZE,
    speed: int = 2,
    clips_per_digit: int = 2,
    seed: int = MOVING_DIGITS_SEED,
) -> tuple[Split, Split]:
    """The moving-digits clips as ((train_x, train_y), (test_x, test_y)).

    Clips are uint8 tensors (N, 1, frames, size, size) with values 0..255; labels int64 (N,)
    are ``digit * 4 + direction`` with direction 0 right, 1 left, 2 down, 3 up. With the
    defaults: 2,874 training and 720 test clips of 8 frames of 32×32.
    """
    for name, value, low in (
        ("frames", frames, 2),
        ("size", size, 8),
        ("speed", speed, 1),
        ("clips_per_digit", clips_per_digit, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    (train_x, train_y), (test_x, test_y) = load_digits_splits()
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    common = {"clips_per_digit": clips_per_digit, "frames": frames, "size": size, "speed": speed}
    return (
        _make_split(train_x, train_y, train_rng, **common),
        _make_split(test_x, test_y, test_rng, **common),
    )
