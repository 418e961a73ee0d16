"""Named intermediate activations against torchvision's own feature extractor."""

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

import vggnet

PERCEPTUAL_LAYERS = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]


@pytest.fixture(scope="module")
def vgg16_pair():
    torch.manual_seed(0)
    reference = torchvision.models.vgg16().eval()
    model = vggnet.create_model("vgg16").eval()
    model.load_state_dict(reference.state_dict())
    return model, reference


def test_perceptual_layers_match_torchvision(vgg16_pair):
    model, reference = vgg16_pair
    nodes = {"features.3": "relu1_2", "features.8": "relu2_2", "features.15": "relu3_3", "features.22": "relu4_3"}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = create_feature_extractor(reference, nodes)(x)
        ours = vggnet.extract_features(model, x, PERCEPTUAL_LAYERS)
    assert list(ours) == PERCEPTUAL_LAYERS
    for name in PERCEPTUAL_LAYERS:
        torch.testing.assert_close(ours[name], expected[name], atol=1e-5, rtol=1e-5)
    assert ours["relu4_3"].shape == (2, 512, 8, 8)


def test_head_layers_and_order(vgg16_pair):
    model, _ = vgg16_pair
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        feats = vggnet.extract_features(model, x, ["fc8", "pool5", "relu7"])
        torch.testing.assert_close(feats["fc8"], model(x))
        torch.testing.assert_close(feats["relu7"], model.forward_head(model.forward_features(x), pre_logits=True))
        torch.testing.assert_close(feats["pool5"], model.forward_features(x))
    assert list(feats) == ["fc8", "pool5", "relu7"]


def test_outputs_before_an_inplace_relu_are_kept():
    torch.manual_seed(0)
    model = vggnet.create_model("vgg11_bn", head="compact", width_mult=0.125).eval()
    x = torch.randn(1, 3, 32, 32)
    feats = vggnet.extract_features(model, x, ["conv1_1", "bn1_1", "relu1_1"])
    conv = model.features[0]
    torch.testing.assert_close(feats["conv1_1"], nn.functional.conv2d(x, conv.weight, conv.bias, padding=1))
    assert (feats["bn1_1"] < 0).any()
    torch.testing.assert_close(feats["relu1_1"], feats["bn1_1"].clamp(min=0))


def test_stops_after_the_deepest_requested_layer():
    model = vggnet.create_model("vgg11", head="compact", width_mult=0.125)
    calls = []
    model.get_layer("conv5_1").register_forward_hook(lambda *_: calls.append("conv5_1"))
    vggnet.extract_features(model, torch.randn(1, 3, 32, 32), ["relu4_2"])
    assert calls == []


def test_gradients_flow_for_perceptual_losses():
    model = vggnet.create_model("vgg13", head="compact", width_mult=0.125)
    x = torch.randn(1, 3, 48, 48, requires_grad=True)
    feats = vggnet.extract_features(model, x, ["relu1_2", "relu3_2"])
    sum(f.square().mean() for f in feats.values()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_requests_name_the_valid_layers():
    model = vggnet.create_model("vgg11", head="compact", width_mult=0.125)
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['relu4_3'\]; choose from: conv1_1, relu1_1"):
        vggnet.extract_features(model, x, ["relu1_1", "relu4_3"])
    with pytest.raises(ValueError, match="no layers requested; choose from: conv1_1"):
        vggnet.extract_features(model, x, [])
    with pytest.raises(ValueError, match="too small"):
        vggnet.extract_features(model, torch.randn(1, 3, 16, 16), ["relu1_1"])
