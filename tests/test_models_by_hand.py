"""Models: what the other model tests leave to the defaults, checked against arithmetic
done by hand here.

Channel widths at non-default ``width_mult`` (written out from each paper's rounding rule),
``make_divisible``'s rounding and its 10% rule, the documented constructor defaults, every
argument refusal's whole message, ``reset_classifier``'s checks and where its head lands,
``forward_intermediates``' defaults, the initialisation's spread, and ``model_options`` of
factories unlike the registered ones.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from dwstft.models import create_model, list_models, model_options, registry
from dwstft.models.common import conv_bn, init_weights
from dwstft.models.features import FeatureInfo, feature_info, forward_intermediates, select_stages
from dwstft.models.mobilenet import MobileNet
from dwstft.models.mobilenetv2 import InvertedResidual, MobileNetV2, make_divisible
from dwstft.models.relpu import relpunet
from dwstft.models.shufflenet import ShuffleNet, ShuffleUnit, shufflenet_g3
from dwstft.models.shufflenetv2 import ShuffleNetV2, ShuffleV2Unit
from dwstft.models.stftnet import STFTBlock, STFTNet, STFTNetSpec, spec_options, stftnet
from dwstft.models.video import SpatioTemporalNet
from dwstft.nn.multiscale import MultiScaleSTFTSeparable, ReLPU


def exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


# --- width multipliers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "divisor", "expected"),
    [
        (16, 8, 16),  # already a multiple
        (12, 8, 16),  # 12 + 4 = 16 → 16
        (83, 8, 80),  # 87 → 80, and 80 >= 0.9 · 83 = 74.7
        (100, 8, 104),  # 104 → 104 (nearest, halves up)
        (3, 8, 8),  # never below the divisor
        (20, 16, 32),  # nearest is 16 < 0.9 · 20 = 18: one divisor more
        (10, 9, 9),  # 9 is exactly 0.9 · 10: kept
        (36, 8, 40),  # MobileNetV2 1.5×'s 24 · 1.5
    ],
)
def test_make_divisible_by_hand(value, divisor, expected):
    assert make_divisible(value, divisor) == expected


def mobilenetv2_widths(model: MobileNetV2) -> tuple[int, list[int], int]:
    stem = model.features[0][0].out_channels
    blocks = [m.block[-2].out_channels for m in model.features if isinstance(m, InvertedResidual)]
    return stem, blocks, model.features[-1][0].out_channels


@pytest.mark.parametrize(
    ("width_mult", "stem", "stages", "last"),
    [
        # c · w rounded to a multiple of 8 (nearest, halves up, not below 90%); the last conv
        # stays 1280 up to 1.0 and scales above.
        (0.5, 16, [8, 16, 16, 32, 48, 80, 160], 1280),
        (1.0, 32, [16, 24, 32, 64, 96, 160, 320], 1280),
        (1.5, 48, [24, 40, 48, 96, 144, 240, 480], 1920),
    ],
)
def test_mobilenetv2_widths_by_hand(width_mult, stem, stages, last):
    repeats = [1, 2, 3, 4, 3, 3, 1]
    blocks = [c for c, n in zip(stages, repeats, strict=True) for _ in range(n)]
    model = MobileNetV2(num_classes=10, width_mult=width_mult)
    assert mobilenetv2_widths(model) == (stem, blocks, last)
    assert model.num_features == last and model.head.in_features == last


@pytest.mark.parametrize(
    ("width_mult", "widths"),
    [
        # max(1, round(c · w)) for c = 32 (stem), 64, 128, 128, 256, 256, 512 ×6, 1024 ×2
        (0.5, [16, 32, 64, 64, 128, 128] + [256] * 6 + [512] * 2),
        (0.01, [1, 1, 1, 1, 3, 3] + [5] * 6 + [10] * 2),
    ],
)
def test_mobilenet_widths_by_hand(width_mult, widths):
    model = MobileNet(num_classes=10, width_mult=width_mult)
    found = [model.features[0][0].out_channels]
    found += [block[1][0].out_channels for block in list(model.features)[1:]]
    assert found == widths
    assert model.num_features == widths[-1] and model.head.in_features == widths[-1]
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize(
    ("groups", "width_mult", "widths"),
    [
        # round(c · w / (4g)) · 4g, at least 4g: g = 1 (144, 288, 576) × 0.5 in units of 4
        (1, 0.5, [72, 144, 288]),
        # g = 8 (384, 768, 1536) × 0.1 in units of 32: 1.2 → 1, 2.4 → 2, 4.8 → 5
        (8, 0.1, [32, 64, 160]),
        (8, 0.5, [192, 384, 768]),
    ],
)
def test_shufflenet_widths_by_hand(groups, width_mult, widths):
    model = ShuffleNet(num_classes=10, groups=groups, width_mult=width_mult)
    assert [f.num_chs for f in model.feature_info] == [24, *widths]
    assert model.num_features == widths[-1]


def test_shufflenet_refuses_stage_widths_that_do_not_grow():
    # g = 8 × 0.05: 0.6 → 1, 1.2 → 1, 2.4 → 2 units of 32: two stages of 32
    message = (
        "width_mult must give stage widths increasing from 24 (e.g. 1.0), got 0.05 → "
        "widths [32, 32, 64] at groups=8"
    )
    with pytest.raises(ValueError, match=exactly(message)):
        ShuffleNet(groups=8, width_mult=0.05)


@pytest.mark.parametrize(
    ("width_mult", "stages", "last"),
    [(0.5, (48, 96, 192), 1024), (1.5, (176, 352, 704), 1024), (2.0, (244, 488, 976), 2048)],
)
def test_shufflenetv2_widths_are_table5s(width_mult, stages, last):
    model = ShuffleNetV2(num_classes=10, width_mult=width_mult)
    units = [m for m in model.features if isinstance(m, ShuffleV2Unit)]
    # each unit's output is twice its branch's last 1x1 conv
    widths = [2 * unit.branch[5].out_channels for unit in units]
    assert widths == [stages[0]] * 4 + [stages[1]] * 8 + [stages[2]] * 4
    assert model.features[-3].out_channels == last and model.num_features == last


def test_a_shuffle_unit_has_no_conv_bias_by_default():
    unit = ShuffleUnit(24, 48, stride=2, groups=2, first_groups=1)
    convs = [m for m in unit.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and all(c.bias is None for c in convs)


def test_conv_bn_keeps_the_size_for_odd_kernels():
    for kernel_size in (1, 3, 5, 7):
        conv = conv_bn(4, 8, kernel_size)[0]
        assert conv.padding == (kernel_size // 2,) * 2
        assert conv(torch.zeros(1, 4, 9, 9)).shape == (1, 8, 9, 9)


# --- defaults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "classes", "x"),
    [
        (MobileNetV2, 10, torch.zeros(1, 3, 32, 32)),
        (MobileNet, 10, torch.zeros(1, 3, 32, 32)),
        (ShuffleNet, 10, torch.zeros(1, 3, 32, 32)),
        (ShuffleNetV2, 10, torch.zeros(1, 3, 32, 32)),
        (shufflenet_g3, 10, torch.zeros(1, 3, 32, 32)),
        (lambda: STFTNet(STFTNetSpec(4, 8, stage_blocks=(1, 1))), 10, torch.zeros(1, 3, 8, 8)),
        (lambda: relpunet(stage_blocks=(1,)), 10, torch.zeros(1, 3, 8, 8)),
        (lambda: create_model("shufflenetv2"), 10, torch.zeros(1, 3, 32, 32)),
        (SpatioTemporalNet, 40, torch.zeros(1, 1, 2, 16, 16)),
    ],
)
def test_documented_defaults_ten_classes_three_channels(build, classes, x):
    model = build().eval()
    assert model.num_classes == classes
    with torch.no_grad():
        assert model(x).shape == (1, classes)


def test_stftnet_function_defaults_are_b8_f128():
    model = stftnet()
    assert model.spec == STFTNetSpec(8, 128) and model.num_classes == 10
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 8, 8)).shape == (1, 10)


def test_the_video_network_defaults():
    model = SpatioTemporalNet()
    assert model.mixer == "stft"
    slopes = [m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert slopes == [0.3] * 4  # the stem's and each of the three blocks'


# --- STFTNet ---------------------------------------------------------------------------


def test_spec_options_are_every_field_but_bottleneck_and_features():
    options = {
        "stage_blocks": (4, 4, 4, 4),
        "block2_from": 1,
        "kernel_sizes": (3, 5),
        "negative_slope": 0.3,
        "stem": "stft",
        "mixer": "stft",
        "bottleneck_layer": "conv",
        "skip": "add",
    }
    assert spec_options() == options
    assert spec_options("mixer", "stem") == {
        k: v for k, v in options.items() if k not in ("mixer", "stem")
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bottleneck": True}, "bottleneck must be a positive int, got True"),
        ({"bottleneck": 0}, "bottleneck must be a positive int, got 0"),
        ({"features": 0}, "features must be a positive int, got 0"),
        (
            {"stage_blocks": (4, 0)},
            "stage_blocks must be positive ints, one per stage, got (4, 0)",
        ),
        ({"stage_blocks": ()}, "stage_blocks must be positive ints, one per stage, got ()"),
        ({"stem": "x"}, "stem must be one of ('stft', 'conv'), got 'x'"),
        ({"mixer": "x"}, "mixer must be one of ('stft', 'relpu'), got 'x'"),
        ({"bottleneck_layer": "x"}, "bottleneck_layer must be one of ('conv', 'stft'), got 'x'"),
        ({"skip": "x"}, "skip must be one of ('add', 'concat'), got 'x'"),
        (
            {"block2_from": (1, 0)},
            "block2_from must be an int >= 0 or one such int per stage (4), got (1, 0)",
        ),
    ],
)
def test_spec_refusals_are_the_whole_message(kwargs, message):
    with pytest.raises(ValueError, match=exactly(message)):
        STFTNetSpec(**{"bottleneck": 8, "features": 16, **kwargs})


def test_the_smallest_spec_is_valid():
    spec = STFTNetSpec(1, 1, stage_blocks=(1,))
    assert (spec.bottleneck, spec.features, spec.num_blocks) == (1, 1, 1)


def test_a_block_mixes_with_the_papers_layer_and_adds_by_default():
    block = STFTBlock(8, 2, (3,), 0.3, skip=True)
    assert isinstance(block.mix, MultiScaleSTFTSeparable) and block.merge is None


def test_each_network_uses_its_mixer():
    def mixers(model):
        return {type(b.mix) for b in model.blocks}

    assert mixers(stftnet(4, 8, stage_blocks=(1, 1))) == {MultiScaleSTFTSeparable}
    assert mixers(stftnet(4, 8, stage_blocks=(1, 1), mixer="relpu")) == {ReLPU}
    assert mixers(relpunet(stage_blocks=(1, 1))) == {ReLPU}


def test_relpunet_passes_in_chans_and_spec_options_on():
    model = relpunet(in_chans=1, stage_blocks=(1, 1), negative_slope=0.1).eval()
    assert model.spec.stage_blocks == (1, 1) and model.spec.negative_slope == 0.1
    assert (model.spec.bottleneck, model.spec.features) == (44, 256)
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_the_conv_stem_is_a_size_keeping_3x3():
    model = stftnet(4, 8, stage_blocks=(1, 1), stem="conv").eval()
    stem = model.features[0][0]
    assert isinstance(stem, nn.Conv2d) and stem.weight.shape == (8, 3, 3, 3)
    assert stem.padding == (1, 1) and stem.stride == (1, 1)
    with torch.no_grad():
        assert model.forward_features(torch.zeros(1, 3, 32, 32)).shape == (1, 8, 16, 16)


# --- the classifier interface ----------------------------------------------------------


def small() -> STFTNet:
    return stftnet(4, 8, stage_blocks=(1, 1))


def test_one_class_gets_a_linear_head():
    model = small()
    model.reset_classifier(1)
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 1
    assert model.num_classes == 1
    assert create_model("stftnet_b8_f128", num_classes=1).head.out_features == 1


@pytest.mark.parametrize("num_classes", [-1, 2.0, True, None])
def test_reset_classifier_refuses_what_is_not_a_count(num_classes):
    message = f"num_classes must be an int >= 0, got {num_classes!r}"
    with pytest.raises(ValueError, match=exactly(message)):
        small().reset_classifier(num_classes)


def test_reset_classifier_keeps_the_models_dtype_and_device():
    model = small().double()
    model.reset_classifier(5)
    assert model.head.weight.dtype == torch.float64 and model.num_classes == 5
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 8, 8, dtype=torch.float64)).shape == (1, 5)
    model = small().to("meta")
    model.reset_classifier(3)
    assert model.head.weight.device.type == "meta"


def test_forward_intermediates_runs_to_the_end_unless_told_to_stop():
    model = small().eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        full = model.forward_features(x)
        for call in (model.forward_intermediates, lambda x, i: forward_intermediates(model, x, i)):
            final, maps = call(x, [0])
            assert torch.equal(final, full) and len(maps) == 1
            assert maps[0].shape[-1] == 16 and final.shape[-1] == 8


def test_select_stages_by_hand():
    info = [FeatureInfo(8, 2**i, f"features.{i}") for i in range(3)]
    assert select_stages(info, None) == [0, 1, 2]
    assert select_stages(info, 1) == [2] and select_stages(info, 3) == [0, 1, 2]
    assert select_stages(info, [-3, 2]) == [0, 2]
    message = "indices must be in [1, 3] (the last n stages), got 0"
    with pytest.raises(ValueError, match=exactly(message)):
        select_stages(info, 0)
    with pytest.raises(ValueError, match=exactly("stage index -4 is out of range for 3 stages")):
        select_stages(info, [-4])


def test_feature_info_needs_a_module_with_in_channels():
    class NoConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.features = nn.Sequential(nn.Identity())

    message = "cannot tell the model's input channels: no module has in_channels"
    with pytest.raises(ValueError, match=exactly(message)):
        feature_info(NoConv())


# --- initialisation --------------------------------------------------------------------


def test_init_weights_spread_is_kaimings_fan_out_and_a_small_linear():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(64, 256, 1), nn.BatchNorm2d(256), nn.Linear(256, 512))
    init_weights(model)
    conv, norm, linear = model
    # fan_out = 256 · 1 · 1: std sqrt(2 / 256) (fan_in would give twice that)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.05)
    assert linear.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert not conv.bias.any() and not linear.bias.any()
    assert torch.equal(norm.weight, torch.ones(256)) and not norm.bias.any()


# --- the registry ----------------------------------------------------------------------


def test_an_unknown_name_lists_the_close_ones_or_all():
    message = "unknown model 'mobilenet_x'; expected one of: mobilenet, mobilenetv2"
    with pytest.raises(ValueError, match=exactly(message)):
        create_model("mobilenet_x")
    everything = ", ".join(sorted(list_models()))
    with pytest.raises(
        ValueError, match=exactly(f"unknown model 'nosuch'; expected one of: {everything}")
    ):
        create_model("nosuch")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 0}, "num_classes must be a positive int, got 0"),
        ({"num_classes": True}, "num_classes must be a positive int, got True"),
        ({"in_chans": 0}, "in_chans must be a positive int, got 0"),
        ({"in_chans": 2.0}, "in_chans must be a positive int, got 2.0"),
        (
            {"zzz": 1, "bogus": 2},
            "model 'mobilenet' does not take bogus, zzz; it takes num_classes, in_chans, "
            "features_only, out_indices and: width_mult=1.0, downsampling=16",
        ),
        ({"out_indices": 2}, "out_indices applies with features_only=True only"),
    ],
)
def test_create_model_refusals_are_the_whole_message(kwargs, message):
    with pytest.raises(ValueError, match=exactly(message)):
        create_model("mobilenet", **kwargs)


def test_create_model_defaults_to_ten_classes():
    assert create_model("mobilenet").num_classes == 10


class Plain(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 3, width: int = 4) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.fc = nn.Linear(in_chans, num_classes)


def no_kwargs(num_classes: int = 10, in_chans: int = 3, depth: int = 2) -> Plain:
    return Plain(num_classes, in_chans)


def star_args(num_classes: int = 10, in_chans: int = 3, *args: int, depth: int = 2) -> Plain:
    return Plain(num_classes, in_chans)


def bare(num_classes: int = 10, in_chans: int = 3) -> Plain:
    return Plain(num_classes, in_chans)


def passes_kwargs(num_classes: int = 10, in_chans: int = 3, **kwargs: int) -> Plain:
    return Plain(num_classes, in_chans, **kwargs)


def test_model_options_of_factories_unlike_the_registered_ones(monkeypatch):
    for factory in (no_kwargs, star_args, bare, passes_kwargs):
        monkeypatch.setitem(registry._MODELS, factory.__name__, factory)
    # only a factory that passes **kwargs on takes the returned class's options
    assert model_options("no_kwargs") == {"depth": 2}
    assert model_options("star_args") == {"depth": 2}
    assert model_options("passes_kwargs") == {"width": 4}
    assert model_options("bare") == {}
    message = (
        "model 'bare' does not take x; it takes num_classes, in_chans, features_only, "
        "out_indices and: no options"
    )
    with pytest.raises(ValueError, match=exactly(message)):
        create_model("bare", x=1)
