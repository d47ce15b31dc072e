"""The four depthwise-separable baselines of Table 2: sizes, shapes, gradients, arguments."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from torch import nn

from dwstft.models import create_model, paper_reference
from dwstft.models.shufflenet import channel_shuffle

# Table 2 of Kumawat & Raman (2020): (params in millions at 100 classes, pre-logit width,
# CIFAR-10 accuracy, CIFAR-100 accuracy).
TABLE2 = {
    "shufflenet": (1.05, 800, 90.80, 70.06),
    "shufflenetv2": (1.35, 1024, 91.42, 69.51),
    "mobilenet": (3.31, 1024, 91.87, 65.98),
    "mobilenetv2": (2.36, 1280, 93.14, 68.08),
}
NAMES = sorted(TABLE2)


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def bn(c: int) -> int:
    return 2 * c


def linear(f: int, num_classes: int) -> int:
    return f * num_classes + num_classes


def mobilenet_count(num_classes: int, in_chans: int) -> int:
    """MobileNet v1 (width 1.0) by hand: bias-free convs, BN after each, a linear head."""
    widths = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    total = 3 * 3 * in_chans * 32 + bn(32)
    for cin, cout in pairwise(widths):
        total += 3 * 3 * cin + bn(cin)  # depthwise
        total += cin * cout + bn(cout)  # pointwise
    return total + linear(1024, num_classes)


def mobilenetv2_count(num_classes: int, in_chans: int) -> int:
    """MobileNetV2 (width 1.0) by hand from the (t, c, n) table."""
    table = [(1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1)]
    total = 3 * 3 * in_chans * 32 + bn(32)
    cin = 32
    for t, c, n in table:
        for _ in range(n):
            hidden = cin * t
            if t != 1:
                total += cin * hidden + bn(hidden)
            total += 3 * 3 * hidden + bn(hidden) + hidden * c + bn(c)
            cin = c
    return total + 320 * 1280 + bn(1280) + linear(1280, num_classes)


def shufflenet_count(num_classes: int, in_chans: int) -> int:
    """ShuffleNet v1, g = 2, by hand: bottleneck = out/4, grouped 1×1 convs divide by g."""
    g = 2

    def unit(cin: int, cout: int, stride: int, first_groups: int) -> int:
        mid = cout // 4
        branch_out = cout - cin if stride == 2 else cout
        return (
            cin * mid // first_groups
            + bn(mid)
            + 3 * 3 * mid
            + bn(mid)
            + mid * branch_out // g
            + bn(branch_out)
        )

    total = 3 * 3 * in_chans * 24 + bn(24)
    total += unit(24, 200, 2, 1) + 3 * unit(200, 200, 1, g)
    total += unit(200, 400, 2, g) + 7 * unit(400, 400, 1, g)
    total += unit(400, 800, 2, g) + 3 * unit(800, 800, 1, g)
    return total + linear(800, num_classes)


def shufflenetv2_count(num_classes: int, in_chans: int) -> int:
    """ShuffleNet V2 1.0× by hand: each unit's branches work on half the output channels."""

    def down(cin: int, cout: int) -> int:
        h = cout // 2
        left = 3 * 3 * cin + bn(cin) + cin * h + bn(h)
        right = cin * h + bn(h) + 3 * 3 * h + bn(h) + h * h + bn(h)
        return left + right

    def basic(c: int) -> int:
        h = c // 2
        return h * h + bn(h) + 3 * 3 * h + bn(h) + h * h + bn(h)

    total = 3 * 3 * in_chans * 24 + bn(24)
    total += down(24, 116) + 3 * basic(116)
    total += down(116, 232) + 7 * basic(232)
    total += down(232, 464) + 3 * basic(464)
    return total + 464 * 1024 + bn(1024) + linear(1024, num_classes)


HAND_COUNTS = {
    "mobilenet": mobilenet_count,
    "mobilenetv2": mobilenetv2_count,
    "shufflenet": shufflenet_count,
    "shufflenetv2": shufflenetv2_count,
}


@pytest.fixture(scope="module", params=NAMES)
def name_and_model(request: pytest.FixtureRequest) -> tuple[str, nn.Module]:
    torch.manual_seed(0)
    return request.param, create_model(request.param, num_classes=100)


def test_mobilenet_count_matches_known_total() -> None:
    # 3,206,976 in the conv body (the brief's ≈3.21M) plus the 1024 → 100 linear.
    assert mobilenet_count(100, 3) == 3_206_976 + 102_500


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("num_classes", "in_chans"), [(100, 3), (10, 3), (10, 1)])
def test_params_match_hand_count(name: str, num_classes: int, in_chans: int) -> None:
    model = create_model(name, num_classes=num_classes, in_chans=in_chans)
    assert trainable(model) == HAND_COUNTS[name](num_classes, in_chans)


def test_params_within_5_percent_of_paper(name_and_model: tuple[str, nn.Module]) -> None:
    name, model = name_and_model
    paper = TABLE2[name][0] * 1e6
    assert abs(trainable(model) - paper) / paper < 0.05


def test_registry_carries_table2(name_and_model: tuple[str, nn.Module]) -> None:
    name, _ = name_and_model
    ref = paper_reference(name)
    assert ref is not None
    assert (ref.params_m, ref.features, ref.cifar10, ref.cifar100) == TABLE2[name]


def test_pre_logit_width_and_feature_map(name_and_model: tuple[str, nn.Module]) -> None:
    name, model = name_and_model
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 32, 32))
        pooled = model.forward_head(feats, pre_logits=True)
    assert feats.shape == (2, TABLE2[name][1], 4, 4)
    assert pooled.shape == (2, TABLE2[name][1]) == (2, model.num_features)
    torch.testing.assert_close(pooled, feats.mean(dim=(2, 3)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("num_classes", "in_chans"), [(10, 3), (100, 3), (10, 1), (100, 1)])
def test_output_shape(name: str, num_classes: int, in_chans: int) -> None:
    model = create_model(name, num_classes=num_classes, in_chans=in_chans).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_chans, 32, 32))
    assert out.shape == (2, num_classes)
    assert model.num_classes == num_classes
    assert torch.isfinite(out).all()


def test_forward_backward_reaches_every_parameter(name_and_model: tuple[str, nn.Module]) -> None:
    _, model = name_and_model
    model.train()
    model.zero_grad()
    torch.manual_seed(1)
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([3, 71]))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_reset_classifier(name_and_model: tuple[str, nn.Module]) -> None:
    name, _ = name_and_model
    model = create_model(name, num_classes=100).eval()
    x = torch.randn(2, 3, 32, 32)
    model.reset_classifier(7)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
    model.reset_classifier(0)
    with torch.no_grad():
        assert model(x).shape == (2, TABLE2[name][1])


def test_channel_shuffle_exact_permutation() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    assert channel_shuffle(x, 1).flatten().tolist() == [0, 1, 2, 3, 4, 5]


def test_channel_shuffle_moves_whole_channels() -> None:
    c, g = 12, 3
    x = torch.randn(2, c, 3, 5)
    out = channel_shuffle(x, g)
    for k in range(c):
        j, group = divmod(k, g)
        torch.testing.assert_close(out[:, k], x[:, group * (c // g) + j])
    torch.testing.assert_close(channel_shuffle(out, c // g), x)  # shuffling back undoes it
    with pytest.raises(RuntimeError, match="unflatten"):
        channel_shuffle(x, 5)  # constructors only build divisible widths


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"num_classes": -1}, r"num_classes must be an int >= 0, got -1"),
        ({"num_classes": 2.0}, r"num_classes must be an int >= 0, got 2\.0"),
        ({"in_chans": 0}, r"in_chans must be an int >= 1, got 0"),
        ({"in_chans": True}, r"in_chans must be an int >= 1, got True"),
        ({"width_mult": 0}, r"width_mult must .*got 0"),
        ({"width_mult": "1.0"}, r"width_mult must .*got '1\.0'"),
    ],
)
def test_bad_common_arguments(name: str, kwargs: dict, pattern: str) -> None:
    constructor = type(create_model(name))
    with pytest.raises(ValueError, match=pattern):
        constructor(**kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs", "pattern"),
    [
        ("shufflenet", {"groups": 5}, r"groups must be one of \[1, 2, 3, 4, 8\] .*got 5"),
        ("shufflenet", {"groups": True}, r"groups must be one of .*got True"),
        ("shufflenet", {"width_mult": 0.05}, r"width_mult must give .*got 0\.05"),
        ("shufflenetv2", {"width_mult": 0.75}, r"one of \[0\.5, 1\.0, 1\.5, 2\.0\].*got 0\.75"),
        ("mobilenet", {"width_mult": -0.5}, r"width_mult must be a number > 0 .*got -0\.5"),
    ],
)
def test_bad_model_specific_arguments(name: str, kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        create_model(name, **kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs", "features"),
    [
        ("mobilenet", {"width_mult": 0.5}, 512),
        ("mobilenetv2", {"width_mult": 0.5}, 1280),
        ("shufflenet", {"groups": 3}, 960),
        ("shufflenetv2", {"width_mult": 0.5}, 1024),
        ("shufflenetv2", {"width_mult": 2.0}, 2048),
    ],
)
def test_other_widths_build_and_run(name: str, kwargs: dict, features: int) -> None:
    model = create_model(name, num_classes=10, **kwargs).eval()
    with torch.no_grad():
        out = model.forward_head(model.forward_features(torch.randn(2, 3, 32, 32)), True)
    assert out.shape == (2, features)
