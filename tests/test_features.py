"""Named intermediate activations against torchvision's own feature extractor, and the pictures drawn from
them and from runs (feature grids, Grad-CAM, training curves, confusion matrices), checked for what they show."""

import numpy as np
import pytest
import torch
import torchvision
from conftest import write_image_folder
from PIL import Image
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

import vggnet
from vggnet.data import Preprocess, load_rgb
from vggnet.infer.evaluate import evaluate
from vggnet.infer.visualize import GradCam, cam_overlay, feature_grid, grad_cam, save_grad_cam
from vggnet.plots import plot_results

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
    with pytest.raises(
        ValueError,
        match=r"unknown layer 'relu4_3' in this vgg11 \(compact head\); did you mean 'relu4_2'\? "
        r"its layers are: conv1_1, relu1_1",
    ):
        vggnet.extract_features(model, x, ["relu1_1", "relu4_3"])
    with pytest.raises(ValueError, match="no layers requested; choose from: conv1_1"):
        vggnet.extract_features(model, x, [])
    with pytest.raises(ValueError, match="too small"):
        vggnet.extract_features(model, torch.randn(1, 3, 16, 16), ["relu1_1"])


# ---- the pictures ------------------------------------------------------------------------------------------


@pytest.fixture
def saved_figures(monkeypatch):
    """The matplotlib figures saved during a test, to check what the written pictures show."""
    from matplotlib.figure import Figure

    figures, save = [], Figure.savefig

    def record(figure, *args, **kwargs):
        figures.append(figure)
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return figures


def test_feature_grid_labels_each_channel_on_one_colour_scale(trained, tmp_path, saved_figures):
    checkpoint, data = trained
    image = sorted((data / "val" / "ant").glob("*.png"))[0]
    path = feature_grid(checkpoint, image, "conv2_1", tmp_path / "grid.png", max_maps=10, device="cpu")
    model = vggnet.load_model(checkpoint).eval()
    x = Preprocess.from_checkpoint(model.pretrained_cfg["preprocess"]).transform()(load_rgb(image))[None]
    with torch.no_grad():
        maps = vggnet.extract_features(model, x, ["conv2_1"])["conv2_1"][0, :10].numpy()
    [figure] = saved_figures
    grid, colour_bar = figure.axes
    assert [text.get_text() for text in grid.texts] == [str(channel) for channel in range(10)]
    [mosaic] = grid.images
    # fp32 on either memory format: the kernels round differently, to about 1e-6 of the values' scale.
    assert mosaic.get_clim() == pytest.approx((maps.min(), maps.max()), abs=1e-4)
    shown = np.ma.filled(mosaic.get_array(), np.nan)
    shown = shown[~np.isnan(shown)]
    repeats = shown.size // maps.size  # each map pixel drawn as a square of pixels
    assert shown.size == repeats * maps.size and repeats >= 1
    np.testing.assert_allclose(np.sort(shown), np.sort(np.repeat(maps.ravel(), repeats)), atol=1e-4)
    assert colour_bar.get_ylabel() == "conv2_1 activation"
    title = figure.get_suptitle()
    assert "vgg11_bn" in title and "conv2_1" in title and image.name in title and "0-9 of 16" in title
    assert Image.open(path).format == "PNG"
    with pytest.raises(ValueError, match="is a vector, not feature maps"):
        feature_grid(checkpoint, image, "fc", tmp_path / "x.png")


def test_grad_cam_of_a_small_input_shows_it_enlarged_beside_the_overlay(trained, tmp_path, saved_figures):
    checkpoint, data = trained
    image = sorted((data / "val" / "cat").glob("*.png"))[0]
    result = grad_cam(checkpoint, image, target="bee", device="cpu")
    assert result.view.shape == (3, 32, 32)
    width, height = Image.open(save_grad_cam(result, tmp_path / "cam.png")).size
    [figure] = saved_figures
    left, right, colour_bar = figure.axes
    [view] = left.images
    np.testing.assert_array_equal(view.get_array(), result.view.permute(1, 2, 0).numpy())
    assert view.get_interpolation() == "nearest"  # the input's pixels stay crisp when enlarged
    picture_view, heat_map = right.images
    assert heat_map.get_array().shape[0] >= 224 and heat_map.get_cmap().name == "jet"
    assert [label.get_text() for label in colour_bar.get_yticklabels()] == ["low", "high"]
    assert colour_bar.get_ylabel() == "evidence for 'bee'"
    assert f"class 'bee' is (probability {result.probability:.3f})" in figure.get_suptitle()
    assert image.name in figure.get_suptitle() and result.layer in right.get_title()
    assert width > 1.5 * height and height > 224  # two panels, each larger than the 32x32 input


def test_the_cam_overlay_blends_the_enlarged_view_with_the_jet_heat_map():
    from matplotlib import colormaps

    view = torch.rand(3, 32, 32)
    result = GradCam(torch.tensor([[0.0, 1.0], [0.5, 0.25]]), 0, "ant", 0.9, view, "relu5_2", "x.png", "vgg11")
    plain = np.asarray(cam_overlay(result, alpha=0.0), dtype=np.float64) / 255
    assert plain.shape == (224, 224, 3)  # at least 224 a side, each input pixel a 7x7 block
    np.testing.assert_allclose(plain[3::7, 3::7], view.permute(1, 2, 0).numpy(), atol=0.5 / 255 + 1e-6)
    heat = np.asarray(cam_overlay(result, alpha=1.0), dtype=np.float64) / 255
    for (row, column), value in {(0, 0): 0.0, (0, -1): 1.0, (-1, 0): 0.5, (-1, -1): 0.25}.items():
        np.testing.assert_allclose(heat[row, column], colormaps["jet"](value)[:3], atol=0.5 / 255 + 1e-6)
    half = np.asarray(cam_overlay(result, alpha=0.5), dtype=np.float64) / 255
    np.testing.assert_allclose(half, (plain + heat) / 2, atol=1 / 255 + 1e-6)


def test_results_mark_the_best_epoch_with_whole_epochs_and_a_legend_off_the_curves(tmp_path, saved_figures):
    rows = [
        {"epoch": epoch, "train_loss": loss, "val_loss": loss * 1.2, "train_top1": top1, "val_top1": top1,
         "val_top5": 1.0}
        for epoch, loss, top1 in [(1, 2.0, 0.3), (2, 1.0, 0.8), (3, 0.5, 0.9), (4, 0.4, 0.85), (5, 0.3, 0.9)]
    ]  # fmt: skip
    plot_results(rows, tmp_path / "results.png")
    [figure] = saved_figures
    figure.canvas.draw()
    for axis in figure.axes:
        assert axis.get_xlabel() == "epoch" and axis.get_ylabel()
        ticks = [tick for tick in axis.get_xticks() if axis.get_xlim()[0] <= tick <= axis.get_xlim()[1]]
        assert ticks and all(tick == int(tick) for tick in ticks)
        legend = axis.get_legend().get_window_extent()
        assert not legend.overlaps(axis.get_window_extent())
    best = [line for line in figure.axes[1].lines if line.get_label().startswith("best")]
    assert [(list(line.get_xdata()), list(line.get_ydata())) for line in best] == [([3], [0.9])]  # first of equals
    assert best[0].get_label() == "best: epoch 3, val top-1 0.9000"


def _history(epochs: int, loss: float, growth: float) -> list[dict]:
    return [
        {"epoch": epoch, "train_loss": loss * growth**epoch, "val_loss": 1.3 * loss * growth**epoch,
         "train_top1": 0.5, "val_top1": 0.123456 + epoch / 10_000, "val_top5": 0.9}
        for epoch in range(1, epochs + 1)
    ]  # fmt: skip


@pytest.mark.parametrize(
    "rows",
    [
        _history(1, 3e-5, 1.0),
        _history(1000, 0.31, 1.0004),
        _history(12, 2000.0, 0.1),
        _history(30, 0.35, 1.001),
        _history(5, 1.1e-4, 1.1),
    ],
    ids=["one epoch, tiny losses", "1000 epochs", "losses over 8 decades", "a narrow loss range", "narrow and small"],
)
def test_results_fit_every_label_inside_the_picture(rows, tmp_path, saved_figures):
    """results.png lays itself out by fixed margins: every tick label, axis label, title and legend must still be
    inside the picture, and the two panels' must not overlap."""
    plot_results(rows, tmp_path / "results.png")
    [figure] = saved_figures
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)  # the pyplot figure's canvas went with plt.close
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes = [axis.get_tightbbox(renderer) for axis in figure.axes]
    for box in boxes:
        assert figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1, (box, figure.bbox)
        assert figure.bbox.y0 <= box.y0 and box.y1 <= figure.bbox.y1, (box, figure.bbox)
    assert not boxes[0].overlaps(boxes[1])


def test_confusion_matrix_of_a_class_subset_shows_the_evaluated_classes(trained, tmp_path, saved_figures):
    checkpoint, _ = trained
    some = write_image_folder(tmp_path / "deep" / "folder" / "ants_and_cats", classes=("ant", "cat"), split=False)
    report = evaluate(checkpoint, some, precision="fp32", out=tmp_path / "eval")
    [figure] = saved_figures
    axis = figure.axes[0]
    assert [label.get_text() for label in axis.get_yticklabels()] == ["ant", "cat"]
    assert [label.get_text() for label in axis.get_xticklabels()] == ["ant", "cat", "(other)"]
    assert axis.get_title() == f"ants_and_cats: top-1 {report['top1']:.4f} on 16 images"  # the name, not the path
    assert figure.get_supxlabel() == "(other): predicted as a class not evaluated here (1 of the model's 3: bee)"
    full = torch.tensor(report["confusion_matrix"])
    expected = torch.stack([full[[0, 2]][:, 0], full[[0, 2]][:, 2], full[[0, 2]][:, 1]], dim=1).double()
    shown = torch.from_numpy(np.asarray(axis.images[0].get_array()))
    torch.testing.assert_close(shown, expected / expected.sum(dim=1, keepdim=True))
