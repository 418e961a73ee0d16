"""Looking inside: a grid of one layer's feature maps, and Grad-CAM heat maps.

    vggnet features --model runs/train/exp/best.pt cat.jpg --layer conv1_1 --out grid.png
    vggnet explain --model vgg16 --pretrained imagenet cat.jpg --class "tabby" --out cam.png

Grad-CAM (Selvaraju et al., 2017) weighs each channel of a layer's activation by the mean gradient of the class
score over that channel and keeps the positive part of the sum: where in the image the evidence for the class is.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision.utils import make_grid

from ..data import build_transform, load_rgb
from ..models.features import extract_features
from ..models.vgg import VGG
from .source import LoadedModel, load_for_inference, require_vgg

# Feature-map tiles and heat maps are enlarged to at least this many pixels, so that 7x7 maps stay visible.
MIN_TILE = 64
MIN_VIEW = 224


def _colorize(values: torch.Tensor, colormap: str) -> torch.Tensor:
    """Map values in [0, 1] of shape (H, W) to RGB (3, H, W) with a matplotlib colormap."""
    from matplotlib import colormaps

    rgba = colormaps[colormap](values.clamp(0, 1).numpy())
    return torch.from_numpy(rgba[..., :3]).permute(2, 0, 1).float()


def _to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


def _network_input(loaded: LoadedModel, image_path: str | Path) -> torch.Tensor:
    return build_transform(loaded.preprocess)(load_rgb(image_path))[None].to(loaded.device)


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
    """Save a grid of the first `max_maps` channels of `layer` for one image, each map scaled to its own range
    (viridis colours), tiles enlarged to at least MIN_TILE pixels. Returns the written path."""
    loaded = model if isinstance(model, LoadedModel) else load_for_inference(model, pretrained, device)
    require_vgg(loaded, "features")
    if layer not in loaded.model.layer_names:
        raise ValueError(f"unknown --layer {layer!r}; choose one of: {', '.join(loaded.model.layer_names)}")
    with torch.no_grad():
        maps = extract_features(loaded.model, _network_input(loaded, image), [layer])[layer][0].float().cpu()
    if maps.ndim != 3:
        raise ValueError(f"--layer {layer} is a vector, not feature maps; use a conv, bn, relu or pool layer")
    maps = maps[:max_maps]
    low = maps.amin(dim=(1, 2), keepdim=True)
    high = maps.amax(dim=(1, 2), keepdim=True)
    maps = (maps - low) / (high - low).clamp(min=1e-12)
    scale = max(1, math.ceil(MIN_TILE / maps.shape[-1]))
    maps = nn.functional.interpolate(maps[:, None], scale_factor=scale, mode="nearest")[:, 0]
    tiles = torch.stack([_colorize(m, "viridis") for m in maps])
    grid = make_grid(tiles, nrow=math.ceil(math.sqrt(len(tiles))), padding=2, pad_value=1.0)
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    _to_pil(grid).save(out)
    return out


@dataclass
class GradCam:
    """A Grad-CAM result: `cam` (h, w) at the layer's resolution in [0, 1], the class explained, its score and
    probability, and the network's input view (3, H, W) in [0, 1]."""

    cam: torch.Tensor
    class_index: int
    class_name: str
    probability: float
    view: torch.Tensor
    layer: str


def default_cam_layer(model: VGG) -> str:
    """The last ReLU of the convolutional part (`relu5_3` for vgg16): the deepest layer with a spatial map."""
    return [name for name in model.layer_names if name.startswith("relu") and "_" in name][-1]


def grad_cam(
    model: str | Path | VGG | LoadedModel,
    image: str | Path,
    *,
    target: str | int | None = None,
    layer: str | None = None,
    pretrained: str | Path | None = None,
    device: str = "auto",
) -> GradCam:
    """Grad-CAM of `image` for class `target` (a name or index; default: the predicted class) at `layer`
    (default: `default_cam_layer`)."""
    loaded = model if isinstance(model, LoadedModel) else load_for_inference(model, pretrained, device)
    network = require_vgg(loaded, "explain")
    layer = layer or default_cam_layer(network)
    if layer not in network.layer_names:
        raise ValueError(f"unknown --layer {layer!r}; choose one of: {', '.join(network.layer_names)}")
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
    mean = torch.tensor(loaded.preprocess["mean"]).view(3, 1, 1)
    std = torch.tensor(loaded.preprocess["std"]).view(3, 1, 1)
    view = (x[0].detach().cpu() * std + mean).clamp(0, 1)
    probability = logits.softmax(dim=1)[0, class_index].item()
    return GradCam(cam, class_index, loaded.classes[class_index], probability, view, layer)


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
        hint = f"; did you mean: {', '.join(close)}" if close else f"; choose one of: {', '.join(classes[:20])} ..."
        raise ValueError(f"unknown --class {target!r}{hint}")
    return classes.index(target)


def save_grad_cam(result: GradCam, out: str | Path, alpha: float = 0.5) -> Path:
    """Blend the heat map (jet colours) over the network's view, enlarged to at least MIN_VIEW pixels."""
    size = result.view.shape[-2:]
    scale = max(1.0, MIN_VIEW / min(size))
    target = (round(size[0] * scale), round(size[1] * scale))
    view = nn.functional.interpolate(result.view[None], size=target, mode="bilinear", align_corners=False)[0]
    cam = nn.functional.interpolate(result.cam[None, None], size=target, mode="bilinear", align_corners=False)[0, 0]
    blended = (1 - alpha) * view + alpha * _colorize(cam, "jet")
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    _to_pil(blended).save(out)
    return out
