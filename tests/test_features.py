"""Backbone use in timm's conventions: feature_info, forward_intermediates, features_only,
torch.fx tracing, and the model options create_model names."""

from __future__ import annotations

import copy
import pydoc

import pytest
import torch
import torch.fx

from dwstft.models import FeatureExtractor, create_model, list_models, model_options

#: Stage-end channels of each model at 32×32, read off the architectures' definitions
#: (MobileNet downsamples 16×, like its public CIFAR versions: five stages).
STAGE_CHANNELS = {
    "mobilenet": [64, 128, 256, 512, 1024],
    "mobilenetv2": [24, 32, 96, 1280],
    "shufflenet": [24, 200, 400, 800],
    "shufflenetv2": [24, 116, 232, 1024],
    "relpunet": [256] * 4,
    "stftnet_b8_f128": [128] * 4,
    "stftnet_b64_f384": [384] * 4,
}


@pytest.mark.parametrize("name", sorted(STAGE_CHANNELS))
def test_feature_info_and_intermediates(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    info = model.feature_info
    assert [f.num_chs for f in info] == STAGE_CHANNELS[name]
    assert [f.reduction for f in info] == [2**i for i in range(len(info))]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        assert [tuple(m.shape) for m in maps] == [
            (2, f.num_chs, 32 // f.reduction, 32 // f.reduction) for f in info
        ]
        assert torch.equal(maps[-1], final)
        backbone = create_model(name, features_only=True, out_indices=(1, -1))
        backbone.load_state_dict(model.state_dict(), strict=False)
        picked = backbone.eval()(x)
        assert [m.shape for m in picked] == [maps[1].shape, maps[-1].shape]
        assert torch.equal(picked[0], maps[1]) and torch.equal(picked[1], maps[-1])


def hooked_maps(net: torch.nn.Module, names: list[str], x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of the modules called ``names`` during ``net(x)``, read by forward hooks."""
    modules = dict(net.named_modules())
    seen: dict[str, torch.Tensor] = {}
    handles = [
        modules[n].register_forward_hook(lambda m, i, out, n=n: seen.__setitem__(n, out))
        for n in names
    ]
    with torch.no_grad():
        net(x)
    for handle in handles:
        handle.remove()
    return [seen[n] for n in names]


@pytest.mark.parametrize("out_indices", [None, (1, -1), 2])
@pytest.mark.parametrize("name", ["stftnet_b8_f128", "mobilenet", "mobilenetv2", "shufflenetv2"])
def test_feature_info_accessors_describe_the_real_feature_maps(name, out_indices):
    torch.manual_seed(0)
    backbone = out_indices is not None
    net = create_model(name, features_only=backbone, out_indices=out_indices).eval()
    info = net.feature_info
    for size in (32, 64):
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            maps = net(x) if backbone else net.forward_intermediates(x, intermediates_only=True)
        assert info.channels() == [m.shape[1] for m in maps]
        assert info.reduction() == [size // m.shape[-1] for m in maps]
        assert all(size % m.shape[-1] == 0 == size % m.shape[-2] for m in maps)
        hooked = hooked_maps(net, info.module_name(), x)
        assert all(torch.equal(h, m) for h, m in zip(hooked, maps, strict=True))
    # indexing, len and iteration: the list of returned maps
    assert len(info) == len(maps) and [f.num_chs for f in info] == info.channels()
    assert info[-1].reduction == info.reduction()[-1]
    assert info.get_dicts() == [
        {"num_chs": f.num_chs, "reduction": f.reduction, "module": f.module} for f in info
    ]


def test_feature_info_idx_is_a_stage_number_as_in_timm():
    full = create_model("mobilenetv2").feature_info
    backbone = create_model("mobilenetv2", features_only=True, out_indices=(1, -1))
    info = backbone.feature_info
    assert info.out_indices == (1, 3) and info.channels() == [32, 1280]
    # an int or a list picks stages of the model, whether the backbone returns them or not
    assert info.channels(0) == full.channels(0) == 24
    assert info.reduction([0, -1, 2]) == [1, 8, 4]
    assert info.module_name(-1) == full.module_name()[-1]
    assert info.get_dicts(keys=["reduction", "num_chs"], idx=2) == {"reduction": 4, "num_chs": 96}
    assert info.get_dicts(keys=["num_chs"]) == [{"num_chs": 32}, {"num_chs": 1280}]
    with pytest.raises(ValueError, match=r"idx must be a stage number in \[-4, 4\), got 4"):
        info.channels(4)
    with pytest.raises(ValueError, match=r"idx must be a stage number .* got True"):
        info.reduction(True)
    with pytest.raises(ValueError, match=r"keys must be among .*'module'\], got \['stride'\]"):
        info.get_dicts(keys=["stride"])


def test_feature_info_survives_a_deep_copy():
    model = create_model("shufflenetv2")
    channels = model.feature_info.channels()
    clone = copy.deepcopy(model)
    assert clone.feature_info.channels() == channels == [24, 116, 232, 1024]
    assert clone.feature_info.out_indices == (0, 1, 2, 3)


def test_intermediates_only_and_stop_early():
    model = create_model("stftnet_b8_f128").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        maps = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert [m.shape[-1] for m in maps] == [8, 4]
        final, maps = model.forward_intermediates(x, indices=[0], stop_early=True)
        assert torch.equal(final, maps[0]) and final.shape[-1] == 32


def test_feature_info_leaves_batchnorm_statistics_and_mode_alone():
    model = create_model("mobilenetv2").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.feature_info  # noqa: B018 (the property runs the probe)
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("indices", [0, 5, [4], [-5]])
def test_out_of_range_stages_are_refused(indices):
    with pytest.raises(ValueError, match=r"out of range|must be in"):
        create_model("stftnet_b8_f128", features_only=True, out_indices=indices)


def test_the_backbone_drops_the_head_and_the_unused_stages():
    backbone = create_model("stftnet_b8_f128", features_only=True, out_indices=[1])
    assert isinstance(backbone, FeatureExtractor)
    assert not any(name.startswith("head") for name, _ in backbone.named_parameters())
    assert len(backbone.features) == backbone.feature_info[0].index + 1


@pytest.mark.parametrize("name", list_models())
def test_every_model_is_fx_traceable_and_exact(name):
    torch.manual_seed(1)
    model = create_model(name).eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 8, 32, 32) if name.startswith("video") else torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))
    torch.fx.symbolic_trace(model.train())  # the training graph records too


def test_the_backbone_is_fx_traceable():
    backbone = create_model("shufflenetv2", features_only=True).eval()
    traced = torch.fx.symbolic_trace(backbone)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(traced(x), backbone(x), strict=True))


def test_an_unknown_option_names_what_the_model_takes():
    with pytest.raises(ValueError, match="does not take features_onli") as info:
        create_model("stftnet_b8_f128", features_onli=True)
    message = str(info.value)
    assert "stage_blocks=(4, 4, 4, 4)" in message and "STFTNetSpec" not in message
    assert model_options("shufflenet") == {
        "groups": 2,
        "width_mult": 1.0,
        "group_first_unit": False,
        "conv_bias": False,
    }
    with pytest.raises(ValueError, match="out_indices applies with features_only"):
        create_model("mobilenet", out_indices=[1])


def test_help_lists_every_model_and_its_options():
    text = pydoc.render_doc(create_model, renderer=pydoc.plaintext)
    for name in list_models():
        assert f"``{name}``" in text
    assert "width_mult=1.0" in text and "features_only" in text
