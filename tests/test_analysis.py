"""The per-layer analysis against independent references: torchvision's published figures, PyTorch's own FLOP
counter, and receptive fields measured by back-propagation."""

import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision_reference import TORCHVISION_WEIGHTS

import vggnet
from vggnet.analysis import render_models


@pytest.mark.parametrize("name", vggnet.list_models())
def test_totals_equal_torchvisions_published_figures(name):
    meta = TORCHVISION_WEIGHTS[name].meta
    summary = vggnet.summarize(name, 224)
    assert summary.total_params == meta["num_params"]
    assert round(summary.total_macs / 1e9, 3) == meta["_ops"]
    assert summary.trainable_params == summary.total_params


def test_vgg16_totals():
    summary = vggnet.summarize("vgg16")
    assert summary.total_params == 138_357_544
    assert summary.to_dict()["gmacs"] == 15.47


@pytest.mark.parametrize(
    ("name", "size", "kwargs"),
    [
        ("vgg11", 64, {"head": "compact", "num_classes": 10, "width_mult": 0.25}),
        ("vgg13_bn", 48, {"head": "classic", "num_classes": 3, "width_mult": 0.125}),
        ("vgg16", 96, {"head": "compact", "in_chans": 1, "width_mult": 0.25}),
    ],
)
def test_macs_equal_pytorchs_flop_counter(name, size, kwargs):
    """FlopCounterMode counts 2 FLOPs per multiply-accumulate of convolutions and matrix products."""
    model = vggnet.create_model(name, **kwargs).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, model.in_chans, size, size))
    summary = vggnet.summarize(model, size)
    assert 2 * summary.total_macs == counter.get_total_flops()
    assert summary.total_params == sum(p.numel() for p in model.parameters())


# Published receptive fields of VGG16 (Araujo et al., "Computing Receptive Fields of Convolutional Neural
# Networks", Distill 2019: 212 at pool5) and the recurrence r += (k - 1) * stride_so_far.
VGG16_RECEPTIVE_FIELDS = {
    "conv1_1": (3, 1), "conv1_2": (5, 1), "pool1": (6, 2),
    "conv2_1": (10, 2), "conv2_2": (14, 2), "pool2": (16, 4),
    "conv3_1": (24, 4), "conv3_2": (32, 4), "conv3_3": (40, 4), "pool3": (44, 8),
    "conv4_1": (60, 8), "conv4_2": (76, 8), "conv4_3": (92, 8), "pool4": (100, 16),
    "conv5_1": (132, 16), "conv5_2": (164, 16), "conv5_3": (196, 16), "pool5": (212, 32),
}  # fmt: skip


def test_vgg16_receptive_fields_and_strides():
    layers = {layer.name: layer for layer in vggnet.summarize("vgg16").layers}
    for name, (field, stride) in VGG16_RECEPTIVE_FIELDS.items():
        assert (layers[name].receptive_field, layers[name].stride) == (field, stride), name
    # Every fully connected unit sees the whole 7x7 pool5 map: 212 + 6 * 32.
    assert layers["fc6"].receptive_field == layers["fc8"].receptive_field == 404
    assert layers["fc6"].stride is None


@pytest.mark.parametrize("name", vggnet.list_models())
def test_stacked_3x3_convolutions_see_like_one_larger_kernel(name):
    """Within a block, two stacked 3x3 convolutions see what one 5x5 would, three what one 7x7 would."""
    layers = vggnet.summarize(name).layers
    block_start = {1: (1, 1)}  # block -> (receptive field, stride) of its input
    for layer in layers:
        if layer.type == "MaxPool2d":
            block_start[int(layer.name[4:]) + 1] = (layer.receptive_field, layer.stride)
        if layer.type == "Conv2d":
            block, index = map(int, layer.name[4:].split("_"))
            field, stride = block_start[block]
            kernel = 2 * index + 1  # 3, 5, 7, 9 for 1, 2, 3, 4 stacked convolutions
            assert layer.receptive_field == field + (kernel - 1) * stride, layer.name
    if name == "vgg16":
        conv = {layer.name: layer.receptive_field for layer in layers}
        assert conv["conv1_2"] == 5 and conv["conv3_3"] - conv["pool2"] == (7 - 1) * 4


def _measured_receptive_field(model: nn.Module, layer: str, size: int) -> int:
    """Side of the input region that the centre unit of `layer` depends on, found by back-propagation.

    With positive weights, no bias, a positive input and average pools standing in for max-pools (same window,
    so the same geometry), every path carries gradient, so the non-zero gradient region is the receptive field.
    """
    model = model.eval()
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.constant_(module.weight, 0.01)
            nn.init.zeros_(module.bias)
    for index, module in enumerate(model.features):
        if isinstance(module, nn.MaxPool2d):
            model.features[index] = nn.AvgPool2d(module.kernel_size, module.stride)
    x = torch.ones(1, 3, size, size, requires_grad=True)
    out = vggnet.extract_features(model, x, [layer])[layer]
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = x.grad[0, 0].abs().sum(dim=1).nonzero()
    return int(rows.max() - rows.min() + 1)


def test_receptive_fields_match_back_propagation():
    size = 300  # large enough that the centre units' fields (up to 212) stay inside the image
    summary = {layer.name: layer.receptive_field for layer in vggnet.summarize("vgg16", size).layers}
    for layer in ["conv1_1", "conv1_2", "pool1", "conv2_2", "conv3_3", "pool3", "conv4_3", "conv5_3", "pool5"]:
        model = vggnet.create_model("vgg16", head="compact", width_mult=1 / 16)
        assert _measured_receptive_field(model, layer, size) == summary[layer], layer


def test_small_inputs_and_heads():
    compact = vggnet.summarize("vgg11", 32, head="compact", num_classes=10)
    layers = {layer.name: layer for layer in compact.layers}
    assert layers["pool5"].output_shape == (512, 1, 1)
    assert layers["fc"].output_shape == (10,)
    assert compact.total_params == sum(
        p.numel() for p in vggnet.create_model("vgg11", head="compact", num_classes=10).parameters()
    )
    classic = {layer.name: layer for layer in vggnet.summarize("vgg11", 32).layers}
    # The classic head's 7x7 pool repeats a 1x1 map: its units see no more than pool5 did.
    assert classic["avgpool"].output_shape == (512, 7, 7)
    assert classic["avgpool"].receptive_field == classic["pool5"].receptive_field == classic["fc6"].receptive_field


def test_summary_of_a_model_instance_leaves_it_untouched():
    model = vggnet.create_model("vgg11_bn", num_classes=4, head="compact", width_mult=0.25).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = vggnet.summarize(model, 64)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (
        summary.to_dict() == vggnet.summarize("vgg11_bn", 64, num_classes=4, head="compact", width_mult=0.25).to_dict()
    )


def test_json_schema():
    data = json.loads(vggnet.summarize("vgg13").to_json())
    assert {"model", "input_size", "total_params", "total_macs", "layers"} <= data.keys()
    assert data["model"] == "vgg13" and data["input_size"] == 224
    assert data["total_params"] == sum(layer["params"] for layer in data["layers"])
    assert data["total_macs"] == sum(layer["macs"] for layer in data["layers"])
    for layer in data["layers"]:
        assert set(layer) == {"name", "type", "output_shape", "params", "macs", "receptive_field", "stride"}
    assert data["layers"][0] == {
        "name": "conv1_1",
        "type": "Conv2d",
        "output_shape": [64, 224, 224],
        "params": 1792,
        "macs": 64 * 224 * 224 * 27,
        "receptive_field": 3,
        "stride": 1,
    }


def test_table_and_markdown_renderings():
    summary = vggnet.summarize("vgg16")
    table = summary.render("table")
    assert "conv1_2  Conv2d" in table
    assert "total params: 138,357,544" in table and "15.47 GMACs" in table
    markdown = summary.render("markdown")
    assert "| conv1_1 | Conv2d | 64x224x224 | 1,792 | 86.70M | 3 | 1 |" in markdown
    assert "| fc8 | Linear | 1000 | 4,097,000 | 4.10M | 404 | - |" in markdown


@pytest.mark.parametrize("size", [16, 31, 0, 224.0])
def test_too_small_input_size_is_refused(size):
    with pytest.raises(ValueError, match=f"input size {size!r} is too small .* at least 32"):
        vggnet.summarize("vgg16", size)


def test_model_arguments_with_an_instance_are_refused():
    with pytest.raises(ValueError, match="only when the model is given by name"):
        vggnet.summarize(vggnet.create_model("vgg11", width_mult=0.125), 32, num_classes=3)


def test_describe_models():
    rows = {row["model"]: row for row in vggnet.describe_models()}
    assert list(rows) == vggnet.list_models()
    assert rows["vgg16"]["params"] == 138_357_544 and rows["vgg16"]["gmacs"] == 15.47
    assert rows["vgg16"]["aliases"] == ["vgg"]
    assert rows["vgg19_bn"]["acc1"] == TORCHVISION_WEIGHTS["vgg19_bn"].meta["_metrics"]["ImageNet-1K"]["acc@1"]


def test_the_models_report_in_markdown():
    lines = render_models(224, "markdown").splitlines()
    assert lines[0] == "| model | aliases | params | GMACs@224 | acc@1 | acc@5 |"
    assert lines[1] == "| --- | --- | ---: | ---: | ---: | ---: |"
    meta = TORCHVISION_WEIGHTS["vgg16"].meta
    acc1, acc5 = (meta["_metrics"]["ImageNet-1K"][key] for key in ("acc@1", "acc@5"))
    assert f"| vgg16 | vgg | {meta['num_params']:,} | {meta['_ops']:.3f} | {acc1:.3f} | {acc5:.3f} |" in lines
    assert lines[-1].startswith("accuracy: ImageNet-1K validation, official weights")
