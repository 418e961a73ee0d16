"""`create_model`: the one factory for every VGG, with or without pretrained weights.

>>> import vggnet
>>> model = vggnet.create_model("vgg16_bn", num_classes=10, pretrained="imagenet")
>>> small = vggnet.create_model("vgg11", num_classes=10, head="compact")  # for 32x32 inputs
"""

import logging
from pathlib import Path

import torch

from .loading import QUANTIZED_FORMAT, apply_state_dict, load_weights, read_weights_file
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
        pretrained: `"imagenet"` for torchvision's official weights (always: a file named so is `"./imagenet"`), or
            the path of a `.pth`/`.pt`/`.safetensors` file. Layers whose shapes differ from the weights' (the last
            layer for another `num_classes`, the whole classifier for the compact head) stay freshly initialised,
            and a one-line report says so.
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
    """Rebuild the model saved in a vggnet checkpoint (`best.pt`, `last.pt`) or a vggnet safetensors export,
    with no other input. The model gets the weights, and `model.pretrained_cfg` their classes and preprocessing.
    """
    path = Path(checkpoint).expanduser()
    state_dict, meta = read_weights_file(path)
    if meta.get("format") == QUANTIZED_FORMAT:
        raise ValueError(
            f"{path} is an int8 model written by `vggnet quantize`, not a VGG; run it with vggnet.predict or "
            f"vggnet.evaluate (--model in the CLI), or load the fp32 checkpoint it was made from"
        )
    return rebuild_model(state_dict, meta, path)


def rebuild_model(state_dict: dict[str, torch.Tensor], meta: dict, path: Path) -> VGG:
    """The model that a vggnet file's contents (`read_weights_file`'s state dict and metadata) describe, with its
    weights; `path` is the file's, for messages and `pretrained_cfg["source"]`."""
    spec = meta.get("model")
    if spec is None:
        raise ValueError(
            f"{path} is not a vggnet checkpoint (it does not say which model it holds); load other weights files "
            f"with a model name: --model vgg16 --pretrained {path} (vggnet.create_model('vgg16', "
            f"pretrained={str(path)!r}) in Python), naming the variant they were saved from"
        )
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("kwargs"), dict):
        raise ValueError(f"{path}: entry 'model' must be {{'name': str, 'kwargs': dict}}, got {spec!r}")
    try:
        model = build_model(spec["name"], **spec["kwargs"])
    except TypeError as error:
        raise ValueError(f"{path}: entry 'model' has arguments VGG does not take ({error})") from error
    extra = {key: meta[key] for key in ("classes", "preprocess") if key in meta}
    report = apply_state_dict(model, state_dict, {"source": str(path), **extra})
    if report.skipped:
        raise ValueError(f"{path}: the weights do not fill the model it describes (missing {report.skipped})")
    return model
