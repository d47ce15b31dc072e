"""The registered spatio-temporal networks of the 3-D example."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dwstft import DepthwiseSTFTSeparable3d, create_model, list_models
from dwstft.models.video import SpatioTemporalBlock, SpatioTemporalNet


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def expected_params(weights_per_pair: int, f=32, b=8, classes=40, in_chans=1) -> int:
    """Exact count: stem + BN, three blocks (1×1×1 bottleneck, 3×3×3 mixer, BN), head."""
    stem = weights_per_pair * in_chans * f + f + 2 * f
    block = (f * b + b) + (weights_per_pair * b * f + f) + 2 * f
    return stem + 3 * block + f * classes + classes


def test_registered_and_same_parameter_budget():
    assert {"video_stft_tiny", "video_conv3d_tiny"} <= set(list_models("video_*"))
    stft = create_model("video_stft_tiny", num_classes=40, in_chans=1)
    conv = create_model("video_conv3d_tiny", num_classes=40, in_chans=1)
    assert trainable(stft) == expected_params(26) == 23296  # 13 points, Re and Im
    assert trainable(conv) == expected_params(27) == 24096  # 3×3×3 learned taps
    assert sum(isinstance(m, DepthwiseSTFTSeparable3d) for m in stft.modules()) == 4
    assert not any(isinstance(m, DepthwiseSTFTSeparable3d) for m in conv.modules())


@pytest.mark.parametrize("name", ["video_stft_tiny", "video_conv3d_tiny"])
def test_clips_and_images(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=40, in_chans=1).eval()
    clips = torch.randn(2, 1, 8, 32, 32)
    assert model(clips).shape == (2, 40)
    assert model.forward_features(clips).shape == (2, 32, 2, 4, 4)
    assert model.forward_head(model.forward_features(clips), pre_logits=True).shape == (2, 32)
    image = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(model(image), model(image.unsqueeze(2)))


def test_one_training_step_and_folding_keeps_the_function():
    torch.manual_seed(1)
    model = create_model("video_stft_tiny", num_classes=40, in_chans=1)
    x, y = torch.randn(4, 1, 8, 32, 32), torch.tensor([0, 5, 17, 39])
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    folded = create_model("video_stft_tiny", num_classes=40, in_chans=1).eval()
    folded.load_state_dict(model.state_dict())
    for parent in list(folded.modules()):
        for name, child in parent.named_children():
            if isinstance(child, DepthwiseSTFTSeparable3d):
                setattr(parent, name, child.fold())
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)


def test_bad_mixer():
    with pytest.raises(ValueError, match="mixer must be one of"):
        SpatioTemporalNet("lstm")


@pytest.mark.parametrize("mixer", ["stft", "conv3d"])
def test_a_block_adds_its_input_before_the_normalisation(mixer):
    torch.manual_seed(0)
    block = SpatioTemporalBlock(6, 3, mixer, negative_slope=0.1).eval()
    x = torch.randn(2, 6, 3, 5, 5)
    branch = block.mix(block.bottleneck(x))
    expected = F.leaky_relu(block.bn(branch + x), 0.1)
    torch.testing.assert_close(block(x), expected, rtol=0, atol=0)
