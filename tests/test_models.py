"""The VGG family against torchvision's reference implementation, and the model's public face."""

import inspect
import math

import pytest
import torch
import torchvision
from torch import nn

import vggnet
from vggnet.models.registry import ALIASES


def test_registry_lists_the_eight_variants_and_the_aliases():
    assert vggnet.list_models() == [
        "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"
    ]  # fmt: skip
    assert vggnet.list_models(include_aliases=True)[8:] == ["vgg_tiny", "vgg_small", "vgg", "vgg_big"]
    assert ALIASES == {"vgg_tiny": "vgg11", "vgg_small": "vgg13", "vgg": "vgg16", "vgg_big": "vgg19"}


def test_duplicate_registration_is_an_error():
    from vggnet.models.registry import Architecture, register_model

    with pytest.raises(ValueError, match="already registered"):
        register_model("vgg16", Architecture("vgg16"))
    with pytest.raises(ValueError, match="already registered"):
        register_model("vgg", Architecture("vgg16"))


@pytest.mark.parametrize("name", vggnet.list_models())
def test_matches_torchvision(name):
    """Same state-dict keys and shapes, strict loading, equal outputs, equal parameter counts."""
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)().eval()
    model = vggnet.create_model(name).eval()
    ours = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: v.shape for k, v in reference.state_dict().items()}
    assert ours == theirs
    model.load_state_dict(reference.state_dict(), strict=True)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("alias", list(ALIASES))
def test_aliases_build_the_torchvision_architecture(alias):
    with torch.device("meta"):
        model = vggnet.create_model(alias)
        reference = getattr(torchvision.models, ALIASES[alias])()
    assert model.model_name == ALIASES[alias]
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }


@pytest.mark.parametrize("size", [32, 224])
@pytest.mark.parametrize("name", vggnet.list_models())
def test_forward_backward_with_seven_classes(name, size):
    torch.manual_seed(0)
    model = vggnet.create_model(name, num_classes=7).train()
    batch = 2 if size == 32 else 1
    logits = model(torch.randn(batch, 3, size, size))
    assert logits.shape == (batch, 7)
    assert torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([0, 6][:batch])).backward()
    for key, parameter in model.named_parameters():
        assert parameter.grad is not None, key
        assert torch.isfinite(parameter.grad).all(), key
        assert parameter.grad.abs().sum() > 0, key


@pytest.mark.parametrize("name", ["vgg16", "vgg16_bn"])
def test_compact_head_serves_small_inputs_without_the_big_classifier(name):
    model = vggnet.create_model(name, num_classes=10, head="compact")
    features = sum(p.numel() for p in model.features.parameters())
    assert sum(p.numel() for p in model.parameters()) == features + 512 * 10 + 10
    logits = model(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_other_input_sizes_and_channels():
    model = vggnet.create_model("vgg11", num_classes=3, in_chans=1, head="compact", width_mult=0.25)
    assert model(torch.randn(2, 1, 45, 77)).shape == (2, 3)
    assert model.features[0].weight.shape == (16, 1, 3, 3)


def test_width_mult_scales_every_convolution():
    model = vggnet.create_model("vgg16", width_mult=0.25)
    widths = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
    assert widths == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]
    assert model.num_features == 128
    assert model.classifier[0].in_features == 128 * 7 * 7


def test_kaiming_init_is_torchvisions_and_xavier_is_the_seeds():
    torch.manual_seed(0)
    kaiming = vggnet.create_model("vgg11", init="kaiming")
    xavier = vggnet.create_model("vgg11", init="xavier")
    conv_k, conv_x = kaiming.get_layer("conv3_1"), xavier.get_layer("conv3_1")  # 128 -> 256 channels
    fan_in, fan_out = 128 * 9, 256 * 9
    assert conv_k.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.02)
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert conv_x.weight.abs().max().item() <= bound
    assert conv_x.weight.abs().max().item() > 0.99 * bound
    assert conv_x.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert kaiming.get_layer("fc7").weight.std().item() == pytest.approx(0.01, rel=0.02)
    fc7_bound = math.sqrt(6 / (4096 + 4096))
    assert xavier.get_layer("fc7").weight.abs().max().item() == pytest.approx(fc7_bound, rel=0.01)
    for model in (kaiming, xavier):
        assert all(m.bias.abs().sum() == 0 for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_canonical_layer_names():
    model = vggnet.create_model("vgg16")
    names = model.layer_names
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert [n for n in names if n.startswith("conv")][-3:] == ["conv5_1", "conv5_2", "conv5_3"]
    assert sum(n.startswith("conv") for n in names) == 13
    assert names[-10:] == ["pool5", "avgpool", "flatten", "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
    assert model.get_layer("conv1_1") is model.features[0]
    assert model.get_layer("fc8") is model.classifier[6]
    bn_names = vggnet.create_model("vgg11_bn").layer_names
    assert bn_names[:4] == ["conv1_1", "bn1_1", "relu1_1", "pool1"]
    assert vggnet.create_model("vgg19", head="compact").layer_names[-4:] == ["avgpool", "flatten", "drop", "fc"]
    with pytest.raises(ValueError, match="unknown layer 'conv6_1' in this vgg16 .*did you mean 'conv5_1'"):
        model.get_layer("conv6_1")


def test_an_unknown_layer_lists_the_models_layers_and_the_closest():
    compact = vggnet.create_model("vgg11_bn", head="compact", width_mult=0.125)
    with pytest.raises(ValueError) as error:
        compact.get_layer("relu5_3")
    message = str(error.value)
    assert message.startswith("unknown layer 'relu5_3' in this vgg11_bn (compact head); did you mean 'relu5_2'?")
    assert message.endswith(f"its layers are: {', '.join(compact.layer_names)}")
    # A classic-head name on a compact model (the README's old `--layer relu7`) says which head has it.
    with pytest.raises(ValueError, match="relu7 is a layer of the classic head, and this model has the compact head"):
        compact.get_layer("relu7")
    with pytest.raises(ValueError, match="fc is a layer of the compact head, and this model has the classic head"):
        vggnet.create_model("vgg11", width_mult=0.125).get_layer("fc")
    with pytest.raises(ValueError, match=r"unknown layer 'xyz' in this vgg11_bn \(compact head\); its layers are"):
        compact.get_layer("xyz")  # nothing close: no suggestion


def test_forward_features_head_and_pre_logits():
    torch.manual_seed(0)
    model = vggnet.create_model("vgg11_bn", num_classes=5).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
        logits = model.forward_head(features)
        assert features.shape == (2, 512, 7, 7)
        assert pre_logits.shape == (2, model.head_hidden_size) == (2, 4096)
        torch.testing.assert_close(logits, model(x))
        torch.testing.assert_close(logits, model.classifier[6](pre_logits))
        # The reference: torchvision's classifier without its last layer.
        expected = model.classifier[:-1](torch.flatten(model.avgpool(model.features(x)), 1))
        torch.testing.assert_close(pre_logits, expected)


def test_reset_classifier():
    torch.manual_seed(0)
    model = vggnet.create_model("vgg11", head="compact", width_mult=0.25).eval()
    fc6_before = model.features[0].weight.clone()
    model.reset_classifier(4)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 4)
    assert model.num_classes == 4 and model.model_kwargs["num_classes"] == 4
    assert torch.equal(model.features[0].weight, fc6_before)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, model.num_features)
    with pytest.raises(ValueError, match="num_classes=-1"):
        model.reset_classifier(-1)


def test_every_architecture_argument_of_vgg_goes_through_create_model():
    """`create_model` passes its keywords straight to `VGG`: every argument but the two the variant fixes."""
    fixed_by_the_variant = {"cfg", "norm_layer"}
    arguments = set(inspect.signature(vggnet.VGG).parameters) - fixed_by_the_variant
    model = vggnet.create_model("vgg11", head="compact", width_mult=0.125)
    assert arguments == set(model.model_kwargs)
    with pytest.raises(TypeError, match="unexpected keyword argument 'depth'"):
        vggnet.create_model("vgg11", depth=11)


def test_torchvision_style_builders_are_create_model():
    from vggnet import models

    assert all(getattr(models, name).__name__ == name for name in vggnet.list_models())
    torch.manual_seed(0)
    built = models.vgg13_bn(num_classes=4, head="compact", width_mult=0.125)
    torch.manual_seed(0)
    created = vggnet.create_model("vgg13_bn", num_classes=4, head="compact", width_mult=0.125)
    assert built.model_name == "vgg13_bn"
    assert all(torch.equal(value, created.state_dict()[key]) for key, value in built.state_dict().items())
    with pytest.raises(TypeError):
        models.vgg11("imagenet")  # keyword-only, as torchvision's


def test_model_kwargs_rebuild_the_same_model():
    model = vggnet.create_model("vgg_small", num_classes=3, in_chans=2, dropout=0.1, head="compact", init="xavier")
    assert model.model_name == "vgg13"
    rebuilt = vggnet.create_model(model.model_name, **model.model_kwargs)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert rebuilt.classifier[0].p == 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "vgg17"}, "unknown model 'vgg17'; choose one of: vgg11, vgg11_bn, .*vgg_big"),
        ({"name": "vgg11", "head": "tiny"}, "unknown head 'tiny'; choose one of: classic, compact"),
        ({"name": "vgg11", "init": "normal"}, "unknown init 'normal'; choose one of: kaiming, xavier"),
        ({"name": "vgg11", "num_classes": -2}, "num_classes=-2 must be an integer >= 0"),
        ({"name": "vgg11", "in_chans": 0}, "in_chans=0 must be an integer >= 1"),
        ({"name": "vgg11", "dropout": 1.5}, "dropout=1.5 is not a probability"),
        ({"name": "vgg11", "width_mult": 0}, "width_mult=0 must be positive"),
    ],
)
def test_bad_arguments_name_the_value_and_the_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        vggnet.create_model(**kwargs)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 3, 31, 64), r"31x64 pixels is too small .* at least 32x32"),
        ((1, 3, 64, 16), r"64x16 pixels is too small"),
        ((1, 1, 64, 64), r"expected 3 input channels, got 1 .* in_chans=1"),
        ((3, 64, 64), r"add the batch dimension with x.unsqueeze\(0\)"),
    ],
)
def test_bad_inputs_name_the_problem(shape, message):
    model = vggnet.create_model("vgg11", head="compact", width_mult=0.125)
    with pytest.raises(ValueError, match=message):
        model(torch.randn(*shape))


def test_smallest_input_works_with_both_heads():
    for head in ("classic", "compact"):
        model = vggnet.create_model("vgg11", num_classes=2, head=head, width_mult=0.125)
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 2)
