"""Behaviour the networks must keep, checked against hand computations: residual
additions, the stem's LeakyReLU slope, and orthogonal initialisation of every trained
weight (the classifier included)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dwstft.models import create_model
from dwstft.models.mobilenetv2 import InvertedResidual
from dwstft.models.shufflenet import ShuffleUnit


def _randomise_batchnorm(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)


def test_mobilenetv2_adds_the_input_when_shapes_allow():
    torch.manual_seed(0)
    unit = InvertedResidual(16, 16, stride=1, expansion=6).eval()
    _randomise_batchnorm(unit)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), x + unit.block(x))
        strided = InvertedResidual(16, 16, stride=2, expansion=6).eval()
        torch.testing.assert_close(strided(x), strided.block(x))


def test_shufflenet_unit_adds_the_input_then_relu():
    torch.manual_seed(1)
    unit = ShuffleUnit(24, 24, stride=1, groups=2, first_groups=2).eval()
    _randomise_batchnorm(unit)
    x = torch.randn(2, 24, 8, 8)
    with torch.no_grad():
        squeezed = unit.compress(x)
        # Channel shuffle written out: output channel j*g + k is input channel k*(C/g) + j.
        g, c = 2, squeezed.shape[1]
        order = [k * (c // g) + j for j in range(c // g) for k in range(g)]
        branch = unit.expand(squeezed[:, order])
        torch.testing.assert_close(unit(x), torch.relu(x + branch))


@pytest.mark.parametrize("name", ["stftnet_b8_f128", "relpunet"])
def test_the_stem_leaky_relu_has_the_papers_slope(name):
    model = create_model(name).eval()
    stem = model.features[0]
    _randomise_batchnorm(stem)
    seen = {}
    stem[1].register_forward_hook(lambda m, i, o: seen.setdefault("bn", o))
    with torch.no_grad():
        out = stem(torch.randn(2, 3, 16, 16))
    bn = seen["bn"]
    assert (bn < 0).any()
    torch.testing.assert_close(out, torch.where(bn > 0, bn, 0.3 * bn))


@pytest.mark.parametrize("name", ["stftnet_b8_f128", "relpunet"])
def test_every_trained_weight_starts_orthogonal_and_biases_zero(name):
    torch.manual_seed(2)
    model = create_model(name, num_classes=10)
    checked = 0
    for module_name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach().flatten(1)
            gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
            torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=1e-5, rtol=0)
            assert m.bias is None or not m.bias.any(), module_name
            checked += 1
    assert checked > 0 and isinstance(model.head, nn.Linear)
    head = model.head.weight.detach()
    torch.testing.assert_close(head @ head.T, torch.eye(10), atol=1e-5, rtol=0)


def test_block2_output_is_leaky_relu_of_bn_of_branch_plus_input():
    torch.manual_seed(3)
    model = create_model("stftnet_b8_f128").eval()
    block = next(b for b in model.blocks if b.skip)
    _randomise_batchnorm(block)
    x = torch.randn(2, 128, 8, 8)
    with torch.no_grad():
        expected = F.leaky_relu(block.bn(block.mix(block.bottleneck(x)) + x), 0.3)
        torch.testing.assert_close(block(x), expected)
