"""Argument checks name the argument and the value, for every layer and functional entry
point (the messages are what a user reads; tests match them literally)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from dwstft import DepthwiseSTFT, depthwise_stft
from dwstft.nn.basis import check_kernel_size, stft_basis
from dwstft.nn.functional import fold_weight, stft_separable
from dwstft.nn.multiscale import MultiScaleSTFTSeparable, ReLPU


@pytest.mark.parametrize(("given", "expected"), [((5, 5), 5), ([3, 3], 3), (7, 7)])
def test_square_kernel_sizes_are_accepted_as_pairs(given, expected):
    assert check_kernel_size(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ((3, 5), "kernel_size must be square (n, n), got (3, 5); expected an odd int >= 3"),
        ((3, 3, 3), "kernel_size must be an odd int >= 3, got (3, 3, 3)"),
        (4, "kernel_size must be an odd int >= 3, got 4"),
    ],
)
def test_bad_kernel_sizes_are_named(given, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check_kernel_size(given)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: MultiScaleSTFTSeparable(3, 0), "out_channels must be a positive int, got 0"),
        (lambda: ReLPU(3, 0), "out_channels must be a positive int, got 0"),
        (
            lambda: MultiScaleSTFTSeparable(3, 4, ()),
            "kernel_sizes must name at least one odd size >= 3, got ()",
        ),
        (
            lambda: depthwise_stft(torch.randn(1, 1, 5, 5), 3, stride=0),
            "stride must be a positive int, got 0",
        ),
        (lambda: DepthwiseSTFT(2, 3, stride=0), "stride must be a positive int, got 0"),
        (lambda: DepthwiseSTFT(2, 3, stride=True), "stride must be a positive int, got True"),
        (
            lambda: stft_separable(torch.randn(1, 1, 5, 5), torch.randn(2, 8, 1, 1), stride=0),
            "stride must be a positive int, got 0",
        ),
        (
            lambda: DepthwiseSTFT(2)(np.zeros((1, 2, 5, 5))),
            "input must be a torch.Tensor (N, C, H, W), got ndarray",
        ),
        (
            lambda: fold_weight(torch.randn(4, 12, 1, 1), stft_basis(3)),
            "weight has 12 input channels, expected a multiple of 8",
        ),
    ],
)
def test_bad_arguments_are_named(build, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build()


@pytest.mark.parametrize("layer_class", [MultiScaleSTFTSeparable, ReLPU])
@pytest.mark.parametrize("bias", [True, False])
def test_multi_bank_layers_honour_bias_and_report_their_shape(layer_class, bias):
    layer = layer_class(3, 5, (3, 5), bias=bias)
    assert (layer.pointwise.bias is not None) == bias
    assert (layer.in_channels, layer.out_channels) == (3, 5)
    if layer_class is ReLPU:
        assert layer.kernel_sizes == (3, 5)


def test_the_basis_buffer_is_built_in_the_layer_dtype():
    layer = DepthwiseSTFT(2, 5, dtype=torch.float64)
    assert layer.basis.dtype == torch.float64
    torch.testing.assert_close(layer.basis, stft_basis(5, dtype=torch.float64), rtol=0, atol=0)
