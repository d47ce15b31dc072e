"""An image and its Depthwise-STFT maps (``dwstft viz features``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib import colors
from matplotlib.figure import Figure

from dwstft._figure import new_figure
from dwstft.errors import require
from dwstft.nn.basis import MAPS_PER_CHANNEL, check_kernel_size
from dwstft.nn.functional import depthwise_stft
from dwstft.viz.basis import DIVERGING, MAP_NAMES, pixel_grid

#: Number of images in scikit-learn's bundled digits (``--image digits:N``).
DIGITS_COUNT = 1797


def load_image(spec: str, max_size: int = 128) -> tuple[np.ndarray, str]:
    """An image as a float array (C, H, W) in [0, 1] (C = 1 greyscale or 3 RGB) and a name.

    ``spec`` is a file PIL can read (PNG, JPEG, ...; alpha is dropped, palettes become RGB,
    16-bit and float greyscale is stretched to [0, 1]) or ``"digits:N"``: the N-th image
    (8×8, 0 <= N < 1797) of scikit-learn's bundled digits.
    Images whose longer side exceeds ``max_size`` pixels are shrunk to it (0: never), so
    that each pixel's 3×3 neighbourhood stays visible in the figure.
    """
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0 (0: no limit), got {max_size}")
    if spec.startswith("digits:"):
        index_text = spec.partition(":")[2]
        if not index_text.isdigit() or int(index_text) >= DIGITS_COUNT:
            raise ValueError(f"--image {spec!r}: expected digits:N with 0 <= N < {DIGITS_COUNT}")
        require("sklearn", "data", "--image digits:N")
        from sklearn.datasets import load_digits

        digits = load_digits()
        index = int(index_text)
        pixels = digits.images[index][None].astype(np.float32) / 16.0
        return pixels, f"digit {index} (label {digits.target[index]})"
    from PIL import Image, UnidentifiedImageError

    path = Path(spec)
    if path.is_dir():
        raise ValueError(f"--image {spec!r} is a folder; pass an image file or digits:N")
    if not path.is_file():
        raise FileNotFoundError(f"--image {spec!r} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            deep = img.mode.startswith(("I", "F"))  # 16/32-bit integer or float greyscale
            mode = "F" if deep else "L" if img.mode in ("1", "L", "LA") else "RGB"
            img = img.convert(mode)
    except UnidentifiedImageError as err:
        raise ValueError(f"--image {spec!r} is not an image PIL can read") from err
    if max_size and max(img.size) > max_size:
        img.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    pixels = np.asarray(img, dtype=np.float32)
    # 8-bit images have white at 255; deeper ones have no fixed white: stretch to [0, 1].
    low, high = (float(pixels.min()), float(pixels.max())) if deep else (0.0, 255.0)
    pixels = (pixels - low) / ((high - low) or 1.0)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels), path.name


def features_figure(image: np.ndarray, kernel_size: int = 3, title: str = "") -> Figure:
    """An image and its Depthwise-STFT maps: one row per channel, columns = the channel,
    then Re/Im of v1..v4 (``depthwise_stft`` with zero "same" padding).

    Args:
        image: (C, H, W) or (H, W) float array, values in [0, 1].
        kernel_size: n, odd >= 3.
        title: shown above the figure (e.g. the image's name).

    Each map has its own symmetric colour scale [-m, m], written in its title: m is the
    largest |value| away from the n // 2 pixel frame that the zero padding reaches (the
    whole map for images smaller than 4·(n // 2) + 1 pixels); values beyond are clipped.
    The colour bar reads value / m.
    """
    n = check_kernel_size(kernel_size)
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim != 3:
        raise ValueError(f"image must be (C, H, W) or (H, W), got shape {pixels.shape}")
    channels, height, width = pixels.shape
    maps = depthwise_stft(torch.from_numpy(pixels)[None], n)[0].numpy()
    r = n // 2
    # The colour scale ignores the r-pixel frame touched by the zero padding (when the
    # image is large enough to have an interior), so image edges do not wash out the rest.
    inner = np.s_[r:-r, r:-r] if min(height, width) > 4 * r else np.s_[:, :]
    names = ("grey",) if channels == 1 else ("red", "green", "blue", "alpha")[:channels]
    if channels > 4:
        names = tuple(f"channel {c}" for c in range(channels))
    cols = 1 + MAPS_PER_CHANNEL
    panel = 1.55
    fig = new_figure(panel * cols + 0.8, panel * height / width * channels + 1.0)
    axes = fig.subplots(channels, cols, squeeze=False)
    unit = colors.Normalize(vmin=-1.0, vmax=1.0)
    scaled = None
    for c, row in enumerate(axes):
        row[0].imshow(pixels[c], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        row[0].set_title(f"{names[c]} input", fontsize=9)
        row[0].set_ylabel(names[c], fontsize=11)
        for k in range(MAPS_PER_CHANNEL):
            values = maps[c * MAPS_PER_CHANNEL + k]
            scale = float(np.abs(values[inner]).max()) or 1.0
            scaled = row[k + 1].imshow(
                np.clip(values / scale, -1.0, 1.0),
                cmap=DIVERGING,
                norm=unit,
                interpolation="nearest",
            )
            row[k + 1].set_title(f"{MAP_NAMES[k]}  ±{scale:.3g}", fontsize=9)
        for ax in row:
            pixel_grid(ax, height, width)
    fig.colorbar(
        scaled, ax=axes, shrink=0.9, aspect=30, pad=0.01, label="value / m (per-map scale)"
    )
    heading = f"Depthwise-STFT maps, n = {n} (a = 1/{n})"
    fig.suptitle(f"{heading}: {title}" if title else heading, fontsize=12)
    return fig
