"""``dwstft bench lpq``: images per second of ``dwstft.lpq`` against a straightforward
NumPy/SciPy LPQ that does what the authors' ``lpq.m`` does, image by image.

The reference (``lpq_scipy``) builds the 1-D STFT filters, runs the two
``scipy.signal.convolve2d`` passes per frequency in 'valid' mode, builds the correlation
model and takes the SVD of A D A (per call, as ``lpq.m`` does), decorrelates, quantises with
``> 0``, and histograms with ``numpy.histogram``. It takes the singular vectors with
``dwstft.lpq``'s sign rule so that the two agree; coefficients that are exactly zero get
rounding-noise bits in the reference, so histograms may differ on images with flat windows
(the benchmark reports on how many images they are equal).

Data: square crops at seeded random positions of scikit-learn's two sample photos
(china.jpg, flower.jpg), greyscale.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from dwstft.bench.measure import machine_description, time_interleaved
from dwstft.lpq import lpq


def greyscale(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) → uint8 (H, W) luma with MATLAB ``rgb2gray``'s weights, rounded."""
    weights = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
    return np.round(rgb.astype(np.float64) @ weights).astype(np.uint8)


def photo_crops(count: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 (count, size, size): greyscale crops of china.jpg and flower.jpg, alternating."""
    from sklearn.datasets import load_sample_images

    photos = [greyscale(image) for image in load_sample_images().images]
    if size > min(min(p.shape) for p in photos):
        raise ValueError(f"size must be at most 427 (the photos' height), got {size}")
    rng = np.random.default_rng(seed)
    crops = []
    for k in range(count):
        photo = photos[k % len(photos)]
        top = rng.integers(0, photo.shape[0] - size + 1)
        left = rng.integers(0, photo.shape[1] - size + 1)
        crops.append(photo[top : top + size, left : left + size])
    return np.stack(crops)


def lpq_scipy(
    image: np.ndarray, window_size: int = 7, decorrelate: bool = True, rho: float = 0.9
) -> np.ndarray:
    """Normalised 256-bin LPQ histogram of one greyscale image, the straightforward way."""
    from scipy.signal import convolve2d

    r = window_size // 2
    x = np.arange(-r, r + 1)
    w0 = np.ones(window_size)
    w1 = np.exp(-2j * np.pi * x / window_size)
    w2 = np.conj(w1)
    img = image.astype(np.float64)
    pairs = [(w0, w1), (w1, w0), (w1, w1), (w1, w2)]
    responses = []
    for column_filter, row_filter in pairs:
        column = convolve2d(img, column_filter[:, None], "valid")
        response = convolve2d(column, row_filter[None, :], "valid")
        responses += [response.real, response.imag]
    freq = np.stack(responses, -1)
    if decorrelate:
        xp, yp = np.meshgrid(np.arange(window_size), np.arange(window_size))
        points = np.stack([xp.ravel(order="F"), yp.ravel(order="F")], 1)
        distances = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
        m = np.stack(
            [part(np.outer(a, b)).ravel(order="F") for a, b in pairs for part in (np.real, np.imag)]
        )
        d = m @ rho**distances @ m.T
        a = np.diag([1.000007, 1.000006, 1.000005, 1.000004, 1.000003, 1.000002, 1.000001, 1])
        v = np.linalg.svd(a @ d @ a)[2].T
        v = v * np.sign(v[np.abs(v).argmax(0), np.arange(8)])
        freq = freq @ v
    codes = np.zeros(freq.shape[:2])
    for i in range(8):
        codes += (freq[..., i] > 0) * 2.0**i
    histogram = np.histogram(codes, bins=256, range=(0, 256))[0]
    return histogram / histogram.sum()


@dataclass
class LpqResult:
    """Median seconds per batch of each candidate, and on how many images they agree."""

    images: int
    size: int
    window_size: int
    seconds: dict[str, float]
    equal: int
    #: Seconds of the first ``compile=True`` call (compilation included), None if not run.
    first_compiled_call: float | None = None
    #: Whether the compiled pass gave the eager pass's histograms exactly, None if not run.
    compiled_matches: bool | None = None


def run_lpq_benchmark(
    images: int = 256,
    size: int = 128,
    window_size: int = 7,
    rounds: int = 5,
    device: str | torch.device = "cpu",
    compile: bool = True,
) -> LpqResult:
    """Time ``lpq_scipy`` over the batch against one ``dwstft.lpq`` call (and one with
    ``compile=True``, after timing its first call), interleaved."""
    crops = photo_crops(images, size)
    batch = torch.from_numpy(crops).to(device)
    lpq(batch[:1], window_size)  # validates the arguments before the reference runs
    sync = torch.cuda.synchronize if batch.is_cuda else (lambda: None)

    def reference() -> np.ndarray:
        return np.stack([lpq_scipy(c, window_size) for c in crops])

    def ours(compiled: bool = False) -> torch.Tensor:
        out = lpq(batch, window_size, compile=compiled)
        sync()
        return out

    candidates = {"numpy/scipy": reference, "dwstft.lpq": ours}
    first_call, matches = None, None
    if compile:
        start = time.perf_counter()
        compiled = ours(compiled=True)
        first_call = time.perf_counter() - start
        matches = torch.equal(compiled, ours())
        candidates["dwstft.lpq, compile=True"] = lambda: ours(compiled=True)
    seconds = time_interleaved(candidates, rounds=rounds)
    equal = int((reference() == ours().cpu().numpy()).all(1).sum())
    return LpqResult(images, size, window_size, seconds, equal, first_call, matches)


def format_lpq_table(result: LpqResult, device: torch.device) -> str:
    """Markdown: seconds, images/s and the speed-up, with the machine."""
    ref = result.seconds["numpy/scipy"]
    lines = [
        f"LPQ of {result.images} greyscale {result.size}×{result.size} crops of scikit-learn's "
        f"photos, window {result.window_size}, decorrelated (rho 0.9), normalised histograms; "
        f"{machine_description(device)}. Median of interleaved rounds.",
        "",
        "| implementation | s per batch | images/s | speed-up |",
        "|---|---|---|---|",
    ]
    for name, seconds in result.seconds.items():
        lines.append(
            f"| {name} | {seconds:.4f} | {result.images / seconds:,.0f} | {ref / seconds:.1f}× |"
        )
    lines += [
        "",
        f"Histograms equal on {result.equal} of {result.images} images (the reference "
        "quantises exactly-zero coefficients by rounding noise).",
    ]
    if result.first_compiled_call is not None:
        same = "identical to" if result.compiled_matches else "DIFFERENT from"
        lines.append(
            f"`compile=True`: histograms {same} the eager pass's; its first call, "
            f"compilation included, took {result.first_compiled_call:.1f} s."
        )
    return "\n".join(lines)
