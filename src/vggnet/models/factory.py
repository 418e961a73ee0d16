"""`create_model`: the one factory for every VGG, with or without pretrained weights.

>>> import vggnet
>>> model = vggnet.create_model("vgg16_bn", num_classes=10, pretrained="imagenet")
>>> small = vggnet.create_model("vgg11", num_classes=10, head="compact")  # for 32x32 inputs
"""

import logging
from pathlib import Path

import torch

from .loading import CHECKPOINT_FORMAT, apply_state_dict, load_weights, safe_torch_load
from .registry import build_model
from .vgg import VGG

logger = logging.getLogger("vggnet")


def create_model(
    name: str,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    dropout: float = 0.5,
    init: str = "kaiming",
    head: str = "classic",
    width_mult: float = 1.0,
    pretrained: str | Path | None = None,
    progress: bool = True,
) -> VGG:
    """Build a VGG by registry name, optionally with pretrained weights.

    Args:
        name: A name from `list_models(include_aliases=True)`, e.g. `"vgg16"`, `"vgg16_bn"` or `"vgg"`.
        num_classes: Outputs of the last layer; 0 for none (the model then returns pre-logit features).
        in_chans: Channels of the input images.
        dropout: Dropout probability in the head.
        init: `"kaiming"` (torchvision's initialisation) or `"xavier"` (the seed note's).
        head: `"classic"` (4096-4096 MLP on a 7x7 map, torchvision's) or `"compact"` (global average pool + linear).
        width_mult: Multiplies every convolution's channel count (1.0 is the published network).
        pretrained: `"imagenet"` for torchvision's official weights, or the path of a `.pth`/`.pt`/`.safetensors`
            file. Layers whose shapes differ from the weights' (the last layer for another `num_classes`, the whole
            classifier for the compact head) stay freshly initialised, and a one-line report says so.
        progress: Show a progress bar while downloading weights.
    """
    model = build_model(
        name,
        num_classes=num_classes,
        in_chans=in_chans,
        dropout=dropout,
        init=init,
        head=head,
        width_mult=width_mult,
    )
    if pretrained is not None:
        report = load_weights(model, pretrained, progress=progress)
        logger.log(logging.WARNING if report.skipped or report.adapted else logging.INFO, "%s", report)
    return model


def load_model(checkpoint: str | Path) -> VGG:
    """Rebuild the model saved in a vggnet checkpoint (`best.pt`, `last.pt`) with no other input.

    The model gets the checkpoint's weights, and `model.pretrained_cfg` its classes and preprocessing.
    """
    path = Path(checkpoint).expanduser()
    content = safe_torch_load(path)
    if not isinstance(content, dict) or content.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a vggnet checkpoint (no format={CHECKPOINT_FORMAT!r}); for other weights files use "
            f"vggnet.create_model(name, pretrained={str(path)!r})"
        )
    spec = content.get("model")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("kwargs"), dict):
        raise ValueError(f"{path}: entry 'model' must be {{'name': str, 'kwargs': dict}}, got {spec!r}")
    try:
        model = build_model(spec["name"], **spec["kwargs"])
    except TypeError as error:
        raise ValueError(f"{path}: entry 'model' has arguments VGG does not take ({error})") from error
    state_dict = content.get("state_dict")
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path}: entry 'state_dict' must map parameter names to tensors")
    meta = {key: content[key] for key in ("classes", "preprocess") if key in content}
    report = apply_state_dict(model, state_dict, {"source": str(path), **meta})
    if report.skipped:
        raise ValueError(f"{path}: the weights do not fill the model it describes (missing {report.skipped})")
    return model
