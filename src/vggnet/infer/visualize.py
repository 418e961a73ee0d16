"""Looking inside: a grid of one layer's feature maps, and Grad-CAM heat maps.

    vggnet features --model runs/train/exp/best.pt cat.jpg --layer conv1_1 --out grid.png
    vggnet explain --model vgg16 --pretrained imagenet cat.jpg --class "tabby" --out cam.png

Grad-CAM (Selvaraju et al., 2017) weighs each channel of a layer's activation by the mean gradient of the class
score over that channel and keeps the positive part of the sum: where in the image the evidence for the class is.
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from ..data import load_rgb
from ..models.features import extract_features
from ..models.vgg import VGG
from ..outputs import output_file
from ..plots import pyplot
from .source import LoadedModel, load_for_inference, require_vgg

# The smoothed heat map has at least this many pixels a side, so that it is smooth at the size it is shown.
MIN_VIEW = 224


def _network_input(loaded: LoadedModel, image: str | Path | Image.Image) -> torch.Tensor:
    """The batch of one that the network sees for `image`, a file or a decoded RGB image."""
    rgb = image if isinstance(image, Image.Image) else load_rgb(image)
    return loaded.preprocess.transform()(rgb)[None].to(loaded.device)


def _model_label(loaded: LoadedModel) -> str:
    """`vgg11_bn, exp/best.pt` for a checkpoint (its run folder and file name); the source as given otherwise."""
    source = Path(loaded.source)
    if not source.is_file():
        return loaded.source
    return f"{getattr(loaded.model, 'model_name', None) or 'VGG'}, {source.parent.name}/{source.name}"


def figure_path(out: str | Path, default_name: str) -> Path:
    """The file that `--out` names for a picture, decided and checked before any work, so that the path a verb
    reports is the one written:

    - an existing folder, or a path ending in `/`: `default_name` inside it (as `predict --save-viz DIR` writes
      into a folder), never a file beside the folder;
    - a name without a suffix: `.png` added, as matplotlib would add it;
    - a suffix that matplotlib cannot write: refused, naming the ones it can.

    >>> Path("plots").mkdir()
    >>> figure_path("plots", "cat_gradcam.png").as_posix(), figure_path("cam", "cat_gradcam.png").name
    ('plots/cat_gradcam.png', 'cam.png')

    Raises:
        ValueError: an unsupported suffix, or a path that cannot be written (see `vggnet.outputs.output_file`).
    """
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(out).expanduser()
    if path.is_dir() or str(out).endswith(("/", os.sep)):
        path = path / default_name
    elif not path.suffix:
        path = path.with_suffix(".png")
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        suffixes = ", ".join(f".{name}" for name in sorted(formats))
        raise ValueError(f"--out {out}: pictures cannot be saved as {path.suffix}; use one of: {suffixes}")
    return output_file(path, "--out")


def grad_cam_path(out: str | Path, image: str | Path) -> Path:
    """Where `save_grad_cam` writes for `--out` and the image explained (see `figure_path`): in a folder,
    `<image stem>_gradcam.png`."""
    return figure_path(out, f"{Path(image).stem}_gradcam.png")


def _save(figure, path: Path) -> Path:
    """Write `figure` to `path` (from `figure_path`) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    pyplot().close(figure)
    return path


def feature_grid(
    model: str | Path | VGG | LoadedModel,
    image: str | Path,
    layer: str,
    out: str | Path,
    *,
    pretrained: str | Path | None = None,
    max_maps: int = 64,
    device: str = "auto",
) -> Path:
    """Save a grid of the first `max_maps` channels of `layer` for one image: each tile labelled with its channel
    number, all tiles on one colour scale (viridis, shown by the colour bar, so that strong and weak channels
    can be compared), the title naming the model, the layer and the image. Returns the written path: `out`, or
    `<image stem>_<layer>.png` in it when `out` is a folder (see `figure_path`).

    >>> import vggnet
    >>> from PIL import Image
    >>> Image.new("RGB", (64, 48), "tomato").save("tomato.png")
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> vggnet.feature_grid(model, "tomato.png", "conv1_1", "grid.png", max_maps=4, device="cpu").name
    'grid.png'
    """
    out = figure_path(out, f"{Path(image).stem}_{layer}.png")
    loaded = load_for_inference(model, pretrained, device)
    require_vgg(loaded, "features")
    if max_maps < 1:
        raise ValueError(f"--max-maps must be at least 1, got {max_maps}")
    with torch.no_grad():
        maps = extract_features(loaded.model, _network_input(loaded, image), [layer])[layer][0].float().cpu()
    if maps.ndim != 3:
        raise ValueError(f"--layer {layer} is a vector, not feature maps; use a conv, bn, relu or pool layer")
    channels = len(maps)
    maps = maps[:max_maps]
    figure = _mosaic_figure(maps)
    size = "x".join(map(str, maps.shape[-2:]))
    figure.colorbar(figure.axes[0].images[0], ax=figure.axes[0], shrink=0.7, label=f"{layer} activation")
    figure.suptitle(
        f"{_model_label(loaded)}: {layer} for {Path(image).name}\n"
        f"channels 0-{len(maps) - 1} of {channels}, {size} each, one colour scale",
        fontsize=10,
    )
    return _save(figure, out)


def _mosaic_figure(maps: torch.Tensor):
    """A figure with the maps (n, h, w) as labelled tiles of one image on one colour scale, in a near-square grid.

    One image with text, not an axis per tile: a figure of 64 axes takes seconds to lay out and draw."""
    from matplotlib import colormaps

    count, height, width = maps.shape
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    # Tiles are enlarged (nearest, so the pixels stay square) to at least 32 pixels; the gaps and the label strip
    # above each tile are sized in those pixels for a tile shown about `shown` screen pixels wide.
    scale = max(1, math.ceil(32 / max(height, width)))
    tile_h, tile_w = height * scale, width * scale
    shown = min(200.0, max(90.0, 750.0 / columns))
    per_pixel = shown / tile_w
    gap, strip = math.ceil(6 / per_pixel), math.ceil(14 / per_pixel)
    mosaic = torch.full((rows * (strip + tile_h + gap), columns * (tile_w + gap)), float("nan"))
    enlarged = maps.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    plt = pyplot()
    figure, axis = plt.subplots(
        figsize=(mosaic.shape[1] * per_pixel / 100 + 1.6, mosaic.shape[0] * per_pixel / 100 + 0.9),
        layout="constrained",
    )
    for channel in range(count):
        top = (channel // columns) * (strip + tile_h + gap) + strip
        left = (channel % columns) * (tile_w + gap)
        mosaic[top : top + tile_h, left : left + tile_w] = enlarged[channel]
        axis.text(left + tile_w / 2, top - strip / 2, str(channel), ha="center", va="center", fontsize=8)
    axis.imshow(
        mosaic.numpy(),
        cmap=colormaps["viridis"].with_extremes(bad="white"),
        vmin=maps.min().item(),
        vmax=maps.max().item(),
        interpolation="nearest",
    )
    axis.set_axis_off()
    return figure


@dataclass
class GradCam:
    """A Grad-CAM result: `cam` (h, w) at the layer's resolution in [0, 1], the class explained and its
    probability, the network's input view (3, H, W) in [0, 1], the layer, and the image and model it came from.

    >>> import vggnet
    >>> from PIL import Image
    >>> Image.new("RGB", (64, 48), "tomato").save("tomato.png")
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> model.pretrained_cfg = {"classes": ["ant", "bee", "cat"], "preprocess": vggnet.Preprocess(64, 64).to_dict()}
    >>> result = vggnet.grad_cam(model, "tomato.png", target="bee", device="cpu")
    >>> result.class_name, result.layer, tuple(result.cam.shape), tuple(result.view.shape)
    ('bee', 'relu5_2', (4, 4), (3, 64, 64))
    """

    cam: torch.Tensor
    class_index: int
    class_name: str
    probability: float
    view: torch.Tensor
    layer: str
    image: str
    model: str


def default_cam_layer(model: VGG) -> str:
    """The last ReLU of the convolutional part (`relu5_3` for vgg16): the deepest layer with a spatial map."""
    return [name for name in model.layer_names if name.startswith("relu") and "_" in name][-1]


def grad_cam(
    model: str | Path | VGG | LoadedModel,
    image: str | Path | Image.Image,
    *,
    target: str | int | None = None,
    layer: str | None = None,
    pretrained: str | Path | None = None,
    device: str = "auto",
) -> GradCam:
    """Grad-CAM of `image` (a file, or a decoded RGB image such as an upload) for class `target` (a name or index;
    default: the predicted class) at `layer` (default: `default_cam_layer`).

    >>> import vggnet
    >>> from PIL import Image
    >>> Image.new("RGB", (64, 48), "tomato").save("tomato.png")
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> result = vggnet.grad_cam(model, "tomato.png", target=2, layer="relu4_2", device="cpu")
    >>> result.class_index, tuple(result.cam.shape), 0 <= float(result.cam.min()) <= float(result.cam.max()) <= 1
    (2, (28, 28), True)
    """
    loaded = load_for_inference(model, pretrained, device)
    network = require_vgg(loaded, "explain")
    layer = layer or default_cam_layer(network)
    network.get_layer(layer)  # raises for a layer this model does not have, naming the ones it has
    x = _network_input(loaded, image)
    named_layers = network.named_layers()
    activation = None
    with torch.enable_grad():
        h = x.requires_grad_(True)
        for index, (name, module) in enumerate(named_layers):
            h = module(h)
            if name == layer:
                if h.ndim != 4:
                    raise ValueError(f"--layer {layer} has no spatial map; Grad-CAM needs a conv, relu or pool layer")
                following = named_layers[index + 1][1] if index + 1 < len(named_layers) else None
                h = h.clone() if getattr(following, "inplace", False) else h
                activation = h
        logits = h.float()
        class_index = _class_index(target, loaded.classes, logits)
        gradient = torch.autograd.grad(logits[0, class_index], activation)[0]
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=1))[0].detach().float().cpu()
    cam = cam / cam.max() if cam.max() > 0 else cam
    mean = torch.tensor(loaded.preprocess.mean).view(-1, 1, 1)
    std = torch.tensor(loaded.preprocess.std).view(-1, 1, 1)
    view = (x[0].detach().cpu() * std + mean).clamp(0, 1)
    probability = logits.softmax(dim=1)[0, class_index].item()
    name = "image" if isinstance(image, Image.Image) else Path(image).name
    return GradCam(cam, class_index, loaded.classes[class_index], probability, view, layer, name, _model_label(loaded))


def _class_index(target: str | int | None, classes: list[str], logits: torch.Tensor) -> int:
    if target is None:
        return int(logits.argmax(dim=1).item())
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit() and target not in classes):
        index = int(target)
        if not 0 <= index < len(classes):
            raise ValueError(f"--class {target} is out of range; the model has classes 0..{len(classes) - 1}")
        return index
    if target not in classes:
        close = [c for c in classes if target.lower() in c.lower()][:10]
        more = " ..." if len(classes) > 20 else ""
        hint = f"; did you mean: {', '.join(close)}" if close else f"; choose one of: {', '.join(classes[:20])}{more}"
        raise ValueError(f"unknown --class {target!r}{hint}")
    return classes.index(target)


def _smoothed_cam(result: GradCam) -> tuple[torch.Tensor, tuple[int, int]]:
    """The coarse heat map (2x2 at a 32x32 input) smoothed bilinearly to at least MIN_VIEW pixels a side, so that it
    reads as a region rather than as blocks, with that (height, width)."""
    height, width = result.view.shape[-2:]
    scale = max(1.0, MIN_VIEW / min(height, width))
    size = (round(height * scale), round(width * scale))
    return nn.functional.interpolate(result.cam[None, None], size=size, mode="bilinear")[0, 0], size


def cam_overlay(result: GradCam, alpha: float = 0.5) -> Image.Image:
    """The network's view of the image with the heat map (jet colours, `alpha` opaque) blended over it, as one RGB
    image at least MIN_VIEW pixels a side (the view enlarged with square pixels): what `vggnet serve`'s explain
    route returns.

    >>> import torch
    >>> result = GradCam(torch.rand(2, 2), 0, "ant", 0.9, torch.rand(3, 32, 32), "relu5_2", "x.png", "vgg11")
    >>> cam_overlay(result).size
    (224, 224)
    """
    from matplotlib import colormaps

    cam, (height, width) = _smoothed_cam(result)
    view = nn.functional.interpolate(result.view[None], size=(height, width), mode="nearest")[0].permute(1, 2, 0)
    heat = torch.from_numpy(colormaps["jet"](cam.numpy())[..., :3]).float()
    blended = (1 - alpha) * view + alpha * heat
    return Image.fromarray((blended * 255).round().clamp(0, 255).to(torch.uint8).numpy())


def save_grad_cam(result: GradCam, out: str | Path, alpha: float = 0.5) -> Path:
    """Save the network's view of the image (pixels kept square, so a 32x32 input stays crisp when enlarged)
    beside the heat map blended over it (jet colours, `alpha` opaque), with a colour bar from low to high evidence
    and a title naming the class, its probability, the layer, the image and the model. Returns the written path:
    `out`, or `<image stem>_gradcam.png` in it when `out` is a folder (see `grad_cam_path`).

    >>> import vggnet
    >>> from PIL import Image
    >>> Image.new("RGB", (64, 48), "tomato").save("tomato.png")
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> vggnet.save_grad_cam(vggnet.grad_cam(model, "tomato.png", device="cpu"), "cam.png").name
    'cam.png'
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    out = grad_cam_path(out, result.image)
    height, width = result.view.shape[-2:]
    view = result.view.permute(1, 2, 0).numpy()
    cam, _ = _smoothed_cam(result)  # laid over the view, which is shown unsmoothed
    plt = pyplot()
    figure, (input_axis, overlay_axis) = plt.subplots(1, 2, figsize=(7.6, 4.2), layout="constrained")
    input_axis.imshow(view, interpolation="nearest")
    input_axis.set_title(f"input as the network sees it ({width}x{height})", fontsize=9)
    overlay_axis.imshow(view, interpolation="nearest")
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)  # the view's pixel edges, where imshow put the view
    overlay_axis.imshow(cam.numpy(), cmap="jet", vmin=0, vmax=1, alpha=alpha, extent=extent, interpolation="nearest")
    overlay_axis.set_title(f"Grad-CAM at {result.layer}", fontsize=9)
    for axis in (input_axis, overlay_axis):
        axis.set_axis_off()
    colour_bar = figure.colorbar(
        ScalarMappable(Normalize(0, 1), "jet"), ax=overlay_axis, ticks=[0, 1], shrink=0.8, pad=0.03
    )
    colour_bar.ax.set_yticklabels(["low", "high"])
    colour_bar.set_label(f"evidence for {result.class_name!r}")
    figure.suptitle(
        f"Where the evidence for class {result.class_name!r} is (probability {result.probability:.3f})\n"
        f"{result.image}, {result.model}",
        fontsize=10,
    )
    return _save(figure, out)
