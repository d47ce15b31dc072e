"""Batched, on-device normalisation and augmentation.

Two augmentations, each applied to a whole batch at once with per-image random parameters
on the batch's device:

- :class:`BatchAugment`, the paper's (random horizontal flips, shifts and ±20° rotations)
  as a single affine warp of the normalised batch: one ``affine_grid`` + ``grid_sample``
  call, bilinear interpolation.
- :class:`CropFlipRotate`, torchvision's ``RandomCrop(size, padding)``,
  ``RandomHorizontalFlip()``, ``RandomRotation(degrees)`` in that order on the uint8
  images (what weiaicunzai/pytorch-cifar100 trains its baselines with), as one exact
  gather: every step only moves pixels or fills zeros.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

PADDING_MODES = ("zeros", "border", "reflection")


def normalize(
    images: torch.Tensor,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """uint8 images (N, C, H, W) or clips (N, C, T, H, W) in 0..255 → float32
    ``(x / 255 - mean) / std`` per channel.

    ``mean`` and ``std`` hold one value per channel; pass them as float32 tensors already on
    the images' device to avoid a host-to-device copy per call.
    """
    if images.dtype != torch.uint8 or images.ndim not in (4, 5):
        raise ValueError(
            f"images must be uint8 (N, C, H, W) or (N, C, T, H, W), got {images.dtype} with "
            f"shape {tuple(images.shape)}"
        )
    channels = images.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"mean and std must have one value per channel ({channels}), got {len(mean)} "
            f"and {len(std)}"
        )
    if not isinstance(std, torch.Tensor) and min(std) <= 0:
        raise ValueError(f"std must be positive, got {tuple(std)}")
    shape = (1, -1) + (1,) * (images.ndim - 2)
    m = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(shape)
    s = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(shape)
    return (images.to(torch.float32) / 255 - m) / s


def affine_warp(
    x: torch.Tensor,
    flip: torch.Tensor,
    shift: torch.Tensor,
    angle: torch.Tensor,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Flip, then rotate, then shift every image of ``x`` with its own parameters, in one warp.

    Args:
        x: float images (N, C, H, W).
        flip: bool (N,), mirror the image left-right.
        shift: (N, 2) translation in pixels, (right, down); need not be integer.
        angle: (N,) rotation in degrees, counter-clockwise as displayed, about the centre.
        padding_mode: value of pixels sampled from outside the image: "zeros", "border"
            (nearest edge pixel) or "reflection".

    Returns float (N, C, H, W), bilinearly interpolated. Flips and integer shifts land on
    pixel centres, so they copy pixels up to float32 rounding of the sampling grid (relative
    error ~1e-6; none at 32×32 and 8×8). Quarter turns of square images match
    ``torch.rot90`` up to rounding of cos and sin.
    """
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    n, c, h, w = x.shape
    rad = angle.to(torch.float32) * (math.pi / 180)
    cos, sin = torch.cos(rad), torch.sin(rad)
    sign = 1.0 - 2.0 * flip.to(torch.float32)
    # Sampling map in pixel units about the centre (x right, y down): p_in = A (p_out - shift)
    # with A = flip · rotation(-angle), the inverse of the forward flip-rotate-shift.
    a00, a01, a10, a11 = sign * cos, -sign * sin, sin, cos
    dx, dy = shift[:, 0].to(torch.float32), shift[:, 1].to(torch.float32)
    t0, t1 = -(a00 * dx + a01 * dy), -(a10 * dx + a11 * dy)
    # affine_grid works in coordinates normalised to [-1, 1]: x_n = 2 x / W, y_n = 2 y / H.
    theta = torch.stack(
        [
            torch.stack([a00, a01 * (h / w), t0 * (2 / w)], -1),
            torch.stack([a10 * (w / h), a11, t1 * (2 / h)], -1),
        ],
        -2,
    )
    grid = F.affine_grid(theta.to(x.dtype), [n, c, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


class BatchAugment:
    """Random horizontal flip, shift and rotation for a batch, as one affine warp.

    Per image: a flip with probability ``flip_prob`` (if ``hflip``); a shift drawn uniformly
    in ±``max_shift`` of the width (x) and height (y), continuous, so 0.1 on 32×32 images
    is up to ±3.2 px; a rotation drawn uniformly in ±``max_rotation`` degrees. Pixels from
    outside the image are filled per ``padding_mode``; the default "zeros" applied to
    normalised images (as :class:`~dwstft.data.loader.DeviceLoader` does) fills with the
    training mean colour. With everything disabled the call returns ``x`` unchanged.

    Clips (N, C, T, H, W) get one warp per clip, the same for all of its frames (a flip
    mirrors the motion too, so datasets whose labels depend on it disable flips).
    """

    def __init__(
        self,
        hflip: bool = True,
        max_shift: float = 0.1,
        max_rotation: float = 20.0,
        flip_prob: float = 0.5,
        padding_mode: str = "zeros",
    ) -> None:
        if not 0.0 <= max_shift < 1.0:
            raise ValueError(f"max_shift must lie in [0, 1) (fraction of size), got {max_shift}")
        if not 0.0 <= max_rotation <= 180.0:
            raise ValueError(f"max_rotation must lie in [0, 180] degrees, got {max_rotation}")
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must lie in [0, 1], got {flip_prob}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.hflip = hflip
        self.max_shift = max_shift
        self.max_rotation = max_rotation
        self.flip_prob = flip_prob
        self.padding_mode = padding_mode

    @property
    def enabled(self) -> bool:
        """Whether the augmentation changes anything."""
        flips = self.hflip and self.flip_prob > 0
        return flips or self.max_shift > 0 or self.max_rotation > 0

    def __repr__(self) -> str:
        return (
            f"BatchAugment(hflip={self.hflip}, max_shift={self.max_shift}, "
            f"max_rotation={self.max_rotation}, flip_prob={self.flip_prob}, "
            f"padding_mode={self.padding_mode!r})"
        )

    def sample(
        self, n: int, height: int, width: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw (flip (n,) bool, shift (n, 2) px, angle (n,) degrees) on ``generator``'s device.

        Always draws one (n, 4) uniform tensor, so the random stream advances the same way
        whatever is enabled.
        """
        u = torch.rand(n, 4, generator=generator, device=generator.device)
        flip = (u[:, 0] < self.flip_prob) & self.hflip
        shift = (2 * u[:, 1:3] - 1) * self.max_shift
        shift = torch.stack([shift[:, 0] * width, shift[:, 1] * height], -1)
        angle = (2 * u[:, 3] - 1) * self.max_rotation
        return flip, shift, angle

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment float images ``x`` (N, C, H, W) or clips (N, C, T, H, W); parameters come
        from ``generator``."""
        if not x.is_floating_point() or x.ndim not in (4, 5):
            raise ValueError(
                f"x must be float (N, C, H, W) or (N, C, T, H, W), got {x.dtype} with shape "
                f"{tuple(x.shape)}"
            )
        if not self.enabled:
            return x
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        flip, shift, angle = (p.to(x.device) for p in self.sample(n, h, w, generator))
        frames = x.reshape(n, -1, h, w)  # a clip's frames warp together, as channels
        return affine_warp(frames, flip, shift, angle, self.padding_mode).reshape(x.shape)


def pil_rotation_map(
    angle: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where PIL's ``Image.rotate(angle)`` (nearest, ``expand=False``, centre (W/2, H/2))
    reads each output pixel: (row, column) int64 tensors of shape (N, H, W), which may lie
    outside the image (those output pixels get the fill).

    PIL builds the inverse map of a counter-clockwise rotation by ``angle`` degrees about
    the centre, x = cos·(c + ½ − W/2) − sin·(r + ½ − H/2) + W/2 and
    y = sin·(c + ½ − W/2) + cos·(r + ½ − H/2) + H/2 for output pixel (r, c), with cos and sin
    of ``-radians(angle % 360)`` rounded to 15 decimals; for nearest resampling it then
    evaluates the map in 16.16 fixed point (each coefficient rounded to 1/65536) and reads
    pixel (floor(y), floor(x)). This does the same in float64 then exact int64 arithmetic,
    so it reads the same pixels unless a coefficient lies within float64 rounding of a
    1/65536 boundary. ``angle`` is (N,) degrees.
    """
    rad = -(torch.remainder(angle.to(torch.float64), 360.0) * (math.pi / 180))
    cos = torch.round(torch.cos(rad), decimals=15)
    sin = torch.round(torch.sin(rad), decimals=15)
    cx, cy = width / 2, height / 2
    # PIL's matrix (a, b, c, d, e, f): x = a·x_out + b·y_out + c, y = d·x_out + e·y_out + f.
    a, b, d, e = cos, sin, -sin, cos
    c = a * -cx + b * -cy + 0.0 + cx
    f = d * -cx + e * -cy + 0.0 + cy

    def fixed(v: torch.Tensor) -> torch.Tensor:
        return torch.floor(v * 65536.0 + 0.5).to(torch.int64).view(-1, 1, 1)

    # Fixed point, sampling at pixel centres (the +½ folded into the offsets as PIL does).
    a0, a1, a3, a4 = fixed(a), fixed(b), fixed(d), fixed(e)
    a2, a5 = fixed(c + b * 0.5 + a * 0.5), fixed(f + e * 0.5 + d * 0.5)
    device = angle.device
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    col = (a2 + rows * a1 + cols * a0) >> 16
    row = (a5 + rows * a4 + cols * a3) >> 16
    return row, col


def crop_flip_rotate(
    images: torch.Tensor,
    offsets: torch.Tensor,
    flip: torch.Tensor,
    angle: torch.Tensor,
    padding: int,
) -> torch.Tensor:
    """Crop with zero padding, then mirror, then rotate every image of a uint8 batch.

    Per image, in torchvision's order on a PIL image:

    1. ``RandomCrop((H, W), padding)``: pad ``padding`` zero pixels on every side, keep the
       H × W window whose top-left corner is ``offsets`` (row, column) in the padded image
       (each in [0, 2·padding]): ``cropped[r, c] = image[r + i - padding, c + j - padding]``
       (0 outside the image).
    2. ``RandomHorizontalFlip``: where ``flip``, ``flipped[r, c] = cropped[r, W - 1 - c]``.
    3. ``RandomRotation`` with its defaults (nearest, ``expand=False``, centre, fill 0),
       which on a PIL image is ``Image.rotate(angle)``: see :func:`pil_rotation_map`
       (counter-clockwise as displayed).

    Args:
        images: uint8 (N, C, H, W).
        offsets: integer (N, 2), the crop's (row, column) in the padded image.
        flip: bool (N,).
        angle: (N,) degrees.
        padding: pixels of zero padding before the crop.

    Returns uint8 (N, C, H, W): one gather of input pixels (or zeros), no interpolation.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"images must be uint8 (N, C, H, W), got {images.dtype} with shape "
            f"{tuple(images.shape)}"
        )
    n, c, h, w = images.shape
    device = images.device
    row, col = pil_rotation_map(angle.to(device), h, w)
    inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
    col = torch.where(flip.to(device).view(n, 1, 1), w - 1 - col, col)
    offsets = offsets.to(device, torch.int64)
    row = row + (offsets[:, 0] - padding).view(n, 1, 1)
    col = col + (offsets[:, 1] - padding).view(n, 1, 1)
    inside &= (row >= 0) & (row < h) & (col >= 0) & (col < w)
    source = (row.clamp(0, h - 1) * w + col.clamp(0, w - 1)).view(n, 1, h * w)
    pixels = images.reshape(n, c, h * w).gather(2, source.expand(n, c, h * w))
    return torch.where(inside.view(n, 1, h * w), pixels, 0).view(n, c, h, w)


class CropFlipRotate:
    """torchvision's RandomCrop(size, padding) + RandomHorizontalFlip + RandomRotation(max)
    for a uint8 batch, before normalisation (see :func:`crop_flip_rotate`).

    Per image: the crop's corner uniform on {0, …, 2·``padding``}² (the output keeps the
    input's size), a flip with probability ``flip_prob`` (if ``hflip``), an angle uniform
    in ±``max_rotation`` degrees; zeros (black) fill what comes from outside the image.
    ``on_uint8`` tells :class:`~dwstft.data.loader.DeviceLoader` to apply it before
    normalising. With everything disabled the call returns ``images`` unchanged.
    """

    on_uint8 = True

    def __init__(
        self,
        padding: int = 4,
        hflip: bool = True,
        max_rotation: float = 15.0,
        flip_prob: float = 0.5,
    ) -> None:
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be an int >= 0 (pixels), got {padding!r}")
        if not 0.0 <= max_rotation <= 180.0:
            raise ValueError(f"max_rotation must lie in [0, 180] degrees, got {max_rotation}")
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must lie in [0, 1], got {flip_prob}")
        self.padding = padding
        self.hflip = hflip
        self.max_rotation = max_rotation
        self.flip_prob = flip_prob

    @property
    def enabled(self) -> bool:
        """Whether the augmentation changes anything."""
        flips = self.hflip and self.flip_prob > 0
        return flips or self.padding > 0 or self.max_rotation > 0

    def __repr__(self) -> str:
        return (
            f"CropFlipRotate(padding={self.padding}, hflip={self.hflip}, "
            f"max_rotation={self.max_rotation}, flip_prob={self.flip_prob})"
        )

    def sample(
        self, n: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw (offsets (n, 2) int64, flip (n,) bool, angle (n,) degrees) on ``generator``'s
        device. Always draws one (n, 4) uniform tensor, so the random stream advances the
        same way whatever is enabled."""
        u = torch.rand(n, 4, generator=generator, device=generator.device, dtype=torch.float64)
        flip = (u[:, 0] < self.flip_prob) & self.hflip
        choices = 2 * self.padding + 1
        offsets = torch.floor(u[:, 1:3] * choices).to(torch.int64).clamp_(max=choices - 1)
        angle = (2 * u[:, 3] - 1) * self.max_rotation
        return offsets, flip, angle

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment uint8 ``images`` (N, C, H, W); parameters come from ``generator``."""
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} with shape "
                f"{tuple(images.shape)}"
            )
        if not self.enabled:
            return images
        offsets, flip, angle = self.sample(images.shape[0], generator)
        return crop_flip_rotate(images, offsets, flip, angle, self.padding)
