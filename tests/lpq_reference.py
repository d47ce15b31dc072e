"""An independent NumPy/SciPy reference of LPQ (Ojansivu & Heikkilä 2008), written from the
paper and a reading of the authors' ``lpq.m``: ``scipy.signal.convolve2d`` in 'valid' mode
with the 1-D STFT filters, the correlation-model decorrelation through a full SVD, ``> 0``
quantisation, 256-bin histograms. No code is shared with the package.

Two additions make it exact where ``lpq.m`` leaves the result to rounding noise:

- ``exact_zeros``: for integer images, which STFT coefficients are exactly zero, decided in
  integer arithmetic. With w = exp(-2 pi i / n), a coefficient is P(w) = sum_m c_m w^m, c_m
  the integer sum of the window's pixels whose phase index is m (mod n). Its real part is
  zero iff the cyclotomic polynomial Phi_n divides sum_m c_m (z^m + z^(n - m)), its
  imaginary part iff it divides sum_m c_m (z^m - z^(n - m)) (Phi_n is w's minimal
  polynomial).
- the singular vectors get the sign rule "largest-magnitude entry positive", and their
  entries below 1e-12 (the exactly-zero real/imaginary cross terms) are set to zero.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import convolve2d

REFERENCE_DIAGONAL = [1.000007, 1.000006, 1.000005, 1.000004, 1.000003, 1.000002, 1.000001, 1]
# (row multiplier, column multiplier) of the reference's four frequencies, in its order:
# q1 = w0' * w1 (horizontal), q2 = w1' * w0 (vertical), q3 = w1' * w1, q4 = w1' * w2.
FREQUENCIES = [(0, 1), (1, 0), (1, 1), (1, -1)]


def stft_filters(n: int) -> list[np.ndarray]:
    """The four complex n×n convolution kernels q_k(y) = exp(-2 pi i v_k^T y / n)."""
    r = n // 2
    x = np.arange(-r, r + 1)
    w0 = np.ones(n)
    w1 = np.exp(-2j * np.pi * x / n)
    w2 = np.conj(w1)
    return [np.outer(w0, w1), np.outer(w1, w0), np.outer(w1, w1), np.outer(w1, w2)]


def frequency_response(image: np.ndarray, n: int) -> np.ndarray:
    """(H', W', 8): Re, Im of each frequency, by separable 'valid' convolutions."""
    r = n // 2
    x = np.arange(-r, r + 1)
    w0 = np.ones(n)
    w1 = np.exp(-2j * np.pi * x / n)
    w2 = np.conj(w1)
    img = image.astype(np.float64)
    out = []
    for column_filter, row_filter in [(w0, w1), (w1, w0), (w1, w1), (w1, w2)]:
        response = convolve2d(
            convolve2d(img, column_filter[:, None], "valid"), row_filter[None, :], "valid"
        )
        out += [response.real, response.imag]
    return np.stack(out, -1)


def _cyclotomic(n: int) -> np.ndarray:
    """Integer coefficients of Phi_n, lowest degree first."""
    poly = np.zeros(n + 1, dtype=object)
    poly[0], poly[n] = -1, 1  # z^n - 1
    for d in range(1, n):
        if n % d == 0:
            poly = _divide(poly, _cyclotomic(d))
    return poly


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Exact quotient of integer polynomials (den monic, divides num)."""
    num = list(num)
    while num and num[-1] == 0:
        num.pop()
    den = [int(c) for c in den]
    while den[-1] == 0:
        den.pop()
    quotient = [0] * (len(num) - len(den) + 1)
    for i in range(len(quotient) - 1, -1, -1):
        quotient[i] = num[i + len(den) - 1]
        for j, c in enumerate(den):
            num[i + j] -= quotient[i] * c
    assert all(c == 0 for c in num), "not divisible"
    return np.array(quotient, dtype=object)


def _reduction_matrix(n: int) -> np.ndarray:
    """(n, deg Phi_n) integers: row m holds z^m mod Phi_n."""
    phi = [int(c) for c in _cyclotomic(n)]
    degree = len(phi) - 1
    rows = []
    for m in range(n):
        poly = [0] * (m + 1)
        poly[m] = 1
        for i in range(len(poly) - 1, degree - 1, -1):  # phi is monic
            c = poly[i]
            if c:
                for j in range(degree + 1):
                    poly[i - degree + j] -= c * phi[j]
        rows.append((poly + [0] * degree)[:degree])
    return np.array(rows, dtype=np.int64)


def exact_zeros(image: np.ndarray, n: int) -> np.ndarray:
    """(H', W', 8) bool: which coefficients are exactly zero (integer images only)."""
    assert np.array_equal(image, np.round(image)), "exact_zeros needs an integer image"
    img = image.astype(np.int64)
    r = n // 2
    offsets = np.arange(-r, r + 1)
    reduce = _reduction_matrix(n)
    conj_index = (-np.arange(n)) % n
    out = []
    for p, q in FREQUENCIES:
        phase = (p * offsets[:, None] + q * offsets[None, :]) % n
        classes = np.stack(
            [convolve2d(img, (phase == m).astype(np.int64), "valid") for m in range(n)], -1
        )
        conj = classes[..., conj_index]  # coefficient of z^m in sum_m c_m z^(n - m)
        for combined in (classes + conj, classes - conj):
            out.append(~np.any(combined @ reduce, axis=-1))
    return np.stack(out, -1)


def decorrelation(n: int, rho: float) -> np.ndarray:
    """V (8, 8) of the reference's whitening, columns in descending singular value."""
    m = np.stack(
        [part(q).flatten(order="F") for q in stft_filters(n) for part in (np.real, np.imag)]
    )
    xp, yp = np.meshgrid(np.arange(1, n + 1), np.arange(1, n + 1))
    positions = np.stack([xp.flatten(order="F"), yp.flatten(order="F")], 1)
    distances = np.sqrt(((positions[:, None] - positions[None]) ** 2).sum(-1))
    d = m @ rho**distances @ m.T
    a = np.diag(REFERENCE_DIAGONAL)
    _, _, vh = np.linalg.svd(a @ d @ a)
    v = vh.T
    v[np.abs(v) < 1e-12] = 0.0
    signs = np.sign(v[np.abs(v).argmax(0), np.arange(8)])
    return v * signs


def lpq_reference(
    image: np.ndarray, n: int = 7, decorrelate: bool = True, rho: float = 0.9, exact: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(codes uint8 (H', W'), histogram counts int64 (256,)) of one image."""
    response = frequency_response(image, n)
    if exact:
        response[exact_zeros(image, n)] = 0.0
    if decorrelate:
        response = response @ decorrelation(n, rho)
    codes = np.zeros(response.shape[:2], dtype=np.int64)
    for i in range(8):
        codes += (response[..., i] > 0).astype(np.int64) << i
    histogram, _ = np.histogram(codes, bins=256, range=(0, 256))
    return codes.astype(np.uint8), histogram.astype(np.int64)
