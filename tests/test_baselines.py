"""The depthwise-separable baselines of Table 2: sizes, MACs, shapes, gradients, arguments."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from torch import nn

from dwstft.models import create_model, paper_reference
from dwstft.models.complexity import count_macs
from dwstft.models.shufflenet import channel_shuffle

# Table 2 of Kumawat & Raman (2020): (params in millions at 100 classes, pre-logit width,
# CIFAR-10 accuracy, CIFAR-100 accuracy).
TABLE2 = {
    "shufflenet": (1.05, 800, 90.80, 70.06),
    "shufflenetv2": (1.35, 1024, 91.42, 69.51),
    "mobilenet": (3.31, 1024, 91.87, 65.98),
    "mobilenetv2": (2.36, 1280, 93.14, 68.08),
}
# shufflenet_g3 carries Table 2's ShuffleNet row (its CIFAR-100 number came from a g = 3
# network) but is 960 features wide.
TABLE2["shufflenet_g3"] = TABLE2["shufflenet"]
NAMES = sorted(TABLE2)
FEATURES = {name: row[1] for name, row in TABLE2.items()} | {"shufflenet_g3": 960}
# Side of the last feature map for a 32×32 input.
FINAL_MAP = dict.fromkeys(NAMES, 4) | {"mobilenet": 2}


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


def shufflenet_count(
    num_classes: int, in_chans: int, g: int = 2, group_first: bool = False, bias: bool = False
) -> int:
    """ShuffleNet v1 by hand: bottleneck = out/4, grouped 1×1 convs divide by g; ``bias``
    adds one per output channel of every conv."""
    widths = {2: (200, 400, 800), 3: (240, 480, 960)}[g]

    def conv(weights: int, cout: int) -> int:
        return weights + (cout if bias else 0) + bn(cout)

    def unit(cin: int, cout: int, stride: int, first_groups: int) -> int:
        mid = cout // 4
        branch_out = cout - cin if stride == 2 else cout
        return (
            conv(cin * mid // first_groups, mid)
            + conv(3 * 3 * mid, mid)
            + conv(mid * branch_out // g, branch_out)
        )

    total = conv(3 * 3 * in_chans * 24, 24)
    cin = 24
    for cout, repeats in zip(widths, (4, 8, 4), strict=True):
        first_groups = g if cin != 24 or group_first else 1
        total += unit(cin, cout, 2, first_groups) + (repeats - 1) * unit(cout, cout, 1, g)
        cin = cout
    return total + linear(widths[-1], num_classes)


def shufflenet_g3_count(num_classes: int, in_chans: int) -> int:
    return shufflenet_count(num_classes, in_chans, g=3, group_first=True, bias=True)


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
    "shufflenet_g3": shufflenet_g3_count,
    "shufflenetv2": shufflenetv2_count,
}


def mobilenet_macs(num_classes: int, unstrided: tuple[int, ...] = ()) -> int:
    """MobileNet v1 MACs on one 32×32 image by hand: stem stride 1, the blocks opening the
    128-, 256-, 512- and 1024-channel stages at stride 2 unless their index (0-12) is in
    ``unstrided``; MACs of a conv = weights per output pixel × output pixels."""
    widths = [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    strided = {1, 3, 5, 11} - set(unstrided)
    side, cin = 32, 32
    total = 3 * 3 * 3 * 32 * side * side
    for index, cout in enumerate(widths):
        side //= 2 if index in strided else 1
        total += (3 * 3 * cin + cin * cout) * side * side
        cin = cout
    return total + 1024 * num_classes


@pytest.fixture(scope="module", params=NAMES)
def name_and_model(request: pytest.FixtureRequest) -> tuple[str, nn.Module]:
    torch.manual_seed(0)
    return request.param, create_model(request.param, num_classes=100)


def test_mobilenet_count_matches_known_total() -> None:
    # 3,206,976 in the conv body (the brief's ≈3.21M) plus the 1024 → 100 linear.
    assert mobilenet_count(100, 3) == 3_206_976 + 102_500


def test_shufflenet_g3_count_written_out() -> None:
    # weiaicunzai/pytorch-cifar100's ShuffleNet (README: 1.0M): 1,000,828 without its
    # 12,240 conv biases, with its dense-input 24 → 60 compression grouped (−960).
    assert shufflenet_g3_count(100, 3) == 1_012_108
    assert shufflenet_count(100, 3, g=3) == 1_012_108 - 12_240 + 960


def test_mobilenet_downsamples_like_the_public_cifar_versions() -> None:
    public = create_model("mobilenet", num_classes=100).eval()
    stride8 = create_model("mobilenet", num_classes=100, downsampling=8).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert public.forward_features(x).shape == (1, 1024, 2, 2)
        assert stride8.forward_features(x).shape == (1, 1024, 4, 4)
    assert count_macs(public) == mobilenet_macs(100) == 46_446_592
    assert count_macs(stride8) == mobilenet_macs(100, unstrided=(1,)) == 175_648_768
    assert trainable(public) == trainable(stride8)
    with pytest.raises(ValueError, match=r"downsampling must be one of \[8, 16\].*got 4"):
        create_model("mobilenet", downsampling=4)


def test_shufflenet_g3_is_the_repository_network() -> None:
    model = create_model("shufflenet_g3", num_classes=100)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is not None for c in convs)
    units = [m for m in model.features if hasattr(m, "compress")]
    assert len(units) == 16 and all(u.compress[0].groups == 3 for u in units)
    assert units[0].expand[-2].out_channels == 240 - 24  # concatenated with the 24 input
    assert model.num_features == 960


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
    side = FINAL_MAP[name]
    assert feats.shape == (2, FEATURES[name], side, side)
    assert pooled.shape == (2, FEATURES[name]) == (2, model.num_features)
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
        assert model(x).shape == (2, FEATURES[name])


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


@pytest.mark.parametrize(
    ("name", "activation", "count"),
    [
        # stem + (depthwise, pointwise) in each of the 13 separable blocks
        ("mobilenet", nn.ReLU, 1 + 13 * 2),
        # stem + the t = 1 block's depthwise + (expand, depthwise) in the other 16 + last 1x1
        ("mobilenetv2", nn.ReLU6, 1 + 1 + 16 * 2 + 1),
        # stem + (after the first group conv, after the merge) in each of 4 + 8 + 4 units
        ("shufflenet", nn.ReLU, 1 + 16 * 2),
        ("shufflenet_g3", nn.ReLU, 1 + 16 * 2),
        # stem + 2 in each unit's main branch + 1 in each of the 3 downsampling units'
        # shortcut branch + the last 1x1
        ("shufflenetv2", nn.ReLU, 1 + 16 * 2 + 3 + 1),
    ],
)
def test_every_published_activation_is_there(name, activation, count):
    model = create_model(name, num_classes=10)
    assert sum(isinstance(m, activation) for m in model.modules()) == count


@pytest.mark.parametrize("name", ["shufflenet", "shufflenet_g3"])
def test_shufflenet_downsampling_shortcut_is_a_3x3_average_pool(name):
    pools = [m for m in create_model(name).modules() if isinstance(m, nn.AvgPool2d)]
    assert len(pools) == 3  # one per stage
    assert all((p.kernel_size, p.stride, p.padding) == (3, 2, 1) for p in pools)
