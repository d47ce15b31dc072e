import math

import numpy as np
import pytest
import torch

from dwstft.nn.basis import FREQUENCIES, separable_filters, stft_basis
from stft_reference import stft_reference


@pytest.mark.parametrize("n", [3, 5, 7, 9])
def test_basis_is_the_response_to_a_unit_impulse(n):
    # Correlating an impulse at the centre with kernel K gives K flipped; Eq. 2 applied to
    # an impulse gives exp(-j 2 pi v^T y) at offset y from the impulse.
    x = np.zeros((1, 1, 2 * n + 1, 2 * n + 1))
    x[0, 0, n, n] = 1.0
    ref = stft_reference(x, n)[0]  # (8, H, W)
    r = n // 2
    window = ref[:, n - r : n + r + 1, n - r : n + r + 1]
    basis = stft_basis(n, dtype=torch.float64).numpy()
    np.testing.assert_allclose(basis, window[:, ::-1, ::-1], atol=1e-12)


def test_basis_n3_closed_form():
    b = stft_basis(3, dtype=torch.float64)
    h = math.sqrt(3) / 2
    # Re/Im of v1 = [1/3, 0]: constant along columns, cos/sin of 2 pi (i - 1)/3 along rows.
    np.testing.assert_allclose(b[0].numpy(), np.array([[-0.5] * 3, [1.0] * 3, [-0.5] * 3]))
    np.testing.assert_allclose(b[1].numpy(), np.array([[-h] * 3, [0.0] * 3, [h] * 3]), atol=1e-15)
    np.testing.assert_allclose(b[2].numpy(), b[0].numpy().T)
    np.testing.assert_allclose(b[3].numpy(), b[1].numpy().T)


@pytest.mark.parametrize("n", [3, 5, 7])
def test_basis_is_separable_in_box_cos_sin(n):
    # The 1-D filters written out from their definition, not read from the package.
    angles = [2 * math.pi * (i - n // 2) / n for i in range(n)]
    cos = torch.tensor([math.cos(t) for t in angles], dtype=torch.float64)
    sin = torch.tensor([math.sin(t) for t in angles], dtype=torch.float64)
    torch.testing.assert_close(
        torch.tensor(separable_filters(n), dtype=torch.float64), torch.stack([cos, sin])
    )
    box = torch.ones(n, dtype=torch.float64)
    outer = torch.outer
    expected = torch.stack(
        [
            outer(cos, box),
            outer(sin, box),
            outer(box, cos),
            outer(box, sin),
            outer(cos, cos) - outer(sin, sin),
            outer(sin, cos) + outer(cos, sin),
            outer(cos, cos) + outer(sin, sin),
            outer(sin, cos) - outer(cos, sin),
        ]
    )
    torch.testing.assert_close(stft_basis(n, dtype=torch.float64), expected)


def test_frequencies_are_the_papers():
    assert FREQUENCIES == ((1, 0), (0, 1), (1, 1), (1, -1))


@pytest.mark.parametrize("bad", [0, -3, 1, 2, 4, 3.0, "3", True, (3, 5)])
def test_bad_kernel_size_raises(bad):
    with pytest.raises(ValueError, match="kernel_size"):
        stft_basis(bad)


def test_dtype_and_device():
    b = stft_basis(5, dtype=torch.bfloat16)
    assert b.shape == (8, 5, 5) and b.dtype == torch.bfloat16
