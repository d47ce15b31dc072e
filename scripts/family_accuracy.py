"""The accuracy figures of docs/family.md, measured: the worst relative error of every 1-D and
3-D path against the literal neighbourhood sum (float64), gradcheck on every path, and LPQ
codes against the independent reference on the test images (with the number of codes that
change when exactly-zero coefficients are quantised by rounding noise, as lpq.m does), for
the eager and the ``compile=True`` pass.

Run from the repository root: ``.venv/bin/python scripts/family_accuracy.py`` (about a
minute on two cores, half of it compiling the fused LPQ loop for 10 image and window sizes).
The references live in tests/ (stft_nd_reference.py, lpq_reference.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits, load_sample_images

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dwstft import lpq
from dwstft.nn.basis import maps_per_channel
from dwstft.nn.functional import stft_separable_nd
from lpq_reference import lpq_reference
from stft_nd_reference import stft_nd_reference

PATHS = ("grouped", "folded", "recompute")
KERNELS = [(3,), (5,), (9,), (3, 3, 3), (5, 5, 5), (1, 3, 3), (1, 5, 5), (3, 1, 1), (3, 5, 7)]
SIZES_1D = [(7,), (8,), (31,)]
SIZES_3D = [(5, 6, 7), (4, 4, 4), (8, 5, 9)]
STRIDES = [1, 2]


def worst_relative_errors() -> dict[tuple[tuple[int, ...], str], float]:
    worst: dict[tuple[tuple[int, ...], str], float] = {}
    g = torch.Generator().manual_seed(0)
    for kernel in KERNELS:
        dims = len(kernel)
        maps = maps_per_channel(kernel)
        for size in SIZES_1D if dims == 1 else SIZES_3D:
            for stride in STRIDES:
                x = torch.randn(2, 3, *size, dtype=torch.float64, generator=g)
                w = torch.randn(4, 3 * maps, *(1,) * dims, dtype=torch.float64, generator=g)
                ref_maps = stft_nd_reference(x.numpy(), kernel, (stride,) * dims)
                ref = np.einsum("fk,nk...->nf...", w.reshape(4, -1).numpy(), ref_maps)
                for path in PATHS:
                    out = stft_separable_nd(x, w, None, kernel, stride, impl=path).numpy()
                    err = float(np.abs(out - ref).max() / np.abs(ref).max())
                    worst[(kernel, path)] = max(worst.get((kernel, path), 0.0), err)
    return worst


def gradchecks() -> dict[tuple[tuple[int, ...], str], bool]:
    results = {}
    for kernel, size in [((5,), (9,)), ((3, 3, 3), (3, 4, 3)), ((1, 3, 3), (2, 4, 5))]:
        maps = maps_per_channel(kernel)
        dims = len(kernel)
        x = torch.randn(1, 2, *size, dtype=torch.float64, requires_grad=True)
        w = torch.randn(3, 2 * maps, *(1,) * dims, dtype=torch.float64, requires_grad=True)
        b = torch.randn(3, dtype=torch.float64, requires_grad=True)
        for path in PATHS:

            def fn(x, w, b, path=path, kernel=kernel):
                return stft_separable_nd(x, w, b, kernel, 2, impl=path)

            results[(kernel, path)] = torch.autograd.gradcheck(fn, (x, w, b))
    return results


# The LPQ sets compile the fused loop for 10 shapes, more than torch.compile keeps per
# function by default (8); lpq would run the last ones eagerly.
torch._dynamo.config.recompile_limit = 16


def lpq_agreement() -> list[tuple[str, int, int, int, int, int]]:
    weights = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
    photos = [np.round(p @ weights).astype(np.uint8) for p in load_sample_images().images]
    digits = np.round(load_digits().images * 255 / 16).astype(np.uint8)
    rng = np.random.default_rng(0)
    sets = {
        "random float": rng.normal(size=(20, 40, 40)) * 50,
        "random uint8": rng.integers(0, 256, (20, 40, 40)).astype(np.uint8),
        "digits (all 1,797)": digits,
        "digits upscaled ×4": np.repeat(np.repeat(digits[:100], 4, 1), 4, 2),
        "china.jpg + flower.jpg": np.stack(photos),
    }
    rows = []
    for name, images in sets.items():
        for n, decorrelate in [(3, True), (7, True), (7, False)]:
            exact = not name.startswith("random float")
            batch = torch.from_numpy(images)
            codes = lpq(batch, n, decorrelate, mode="im").numpy()
            fused = lpq(batch, n, decorrelate, mode="im", compile=True).numpy()
            equal = equal_fused = noisy = 0
            for image, ours, ours_fused in zip(images, codes, fused, strict=True):
                reference = lpq_reference(image, n, decorrelate, exact=exact)[0]
                equal += int(np.array_equal(reference, ours))
                equal_fused += int(np.array_equal(reference, ours_fused))
                rounded = lpq_reference(image, n, decorrelate, exact=False)[0]
                noisy += int((rounded != reference).sum())
            label = f"{name}, n={n}, decorrelate={decorrelate}"
            rows.append((label, equal, equal_fused, len(images), noisy, codes.size))
    return rows


def main() -> None:
    print("| kernel | " + " | ".join(PATHS) + " |")
    print("|---|" + "---|" * len(PATHS))
    worst = worst_relative_errors()
    for kernel in KERNELS:
        cells = [f"{worst[(kernel, p)]:.1e}" for p in PATHS]
        print(f"| {'×'.join(map(str, kernel))} | " + " | ".join(cells) + " |")
    print()
    for (kernel, path), ok in gradchecks().items():
        print(f"gradcheck {'×'.join(map(str, kernel))} {path}: {'pass' if ok else 'FAIL'}")
    print()
    columns = ["LPQ test set", "images with identical codes", "the same, compile=True"]
    print("| " + " | ".join([*columns, "codes at exact ties"]) + " |")
    print("|---|---|---|---|")
    for name, equal, equal_fused, total, noisy, pixels in lpq_agreement():
        print(f"| {name} | {equal} / {total} | {equal_fused} / {total} | {noisy:,} of {pixels:,} |")


if __name__ == "__main__":
    main()
