"""`create_model`: the one factory for every VGG, with or without pretrained weights; `load_model` for vggnet's
own files.

>>> import vggnet
>>> model = vggnet.create_model("vgg16_bn", num_classes=10, pretrained="imagenet")  # doctest: +SKIP
>>> small = vggnet.create_model("vgg11", num_classes=10, head="compact")  # for 32x32 inputs
"""

import logging
from pathlib import Path

import torch

from .loading import (
    QUANTIZED_FORMAT,
    apply_state_dict,
    empty_model,
    load_checkpoint,
    load_pretrained,
    read_weights_file,
    weights_description,
    weights_keyword,
)
from .registry import build_model
from .vgg import VGG

logger = logging.getLogger("vggnet")


def create_model(
    name: str,
    *,
    pretrained: str | None = None,
    checkpoint_path: str | Path | None = None,
    progress: bool = True,
    **kwargs,
) -> VGG:
    """Build a VGG by registry name, optionally with the official weights or the weights of a file.

    Layers whose shapes differ from the weights' (the last layer for another `num_classes`, the whole classifier
    for the compact head) stay freshly initialised, and a one-line report says so.

    >>> import torch, vggnet
    >>> model = vggnet.create_model("vgg11", num_classes=10, head="compact", width_mult=0.125)
    >>> model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> torch.save(model.state_dict(), "vgg11_small.pth")
    >>> tuned = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125,
    ...                             checkpoint_path="vgg11_small.pth")  # all but the last layer load
    >>> imagenet = vggnet.create_model("vgg16", pretrained="imagenet")  # doctest: +SKIP

    Args:
        name: A name from `list_models(include_aliases=True)`, e.g. `"vgg16"`, `"vgg16_bn"` or `"vgg"`.
        pretrained: A tag of the official weights: `"imagenet"` for torchvision's ImageNet-1K weights. Files go to
            `checkpoint_path`, so that a tag is never mistaken for a file (nor a file for a tag).
        checkpoint_path: A `.pth`/`.pt`/`.safetensors` weights file: a state dict (torchvision's, a DDP or trainer
            checkpoint's) or a vggnet checkpoint.
        progress: Show a progress bar while downloading weights.
        **kwargs: The architecture's arguments, passed to `VGG`: `num_classes`, `in_chans`, `dropout`, `init`,
            `head`, `width_mult` (see `VGG`).
    """
    if pretrained is not None:
        _check_weights_tag(pretrained, checkpoint_path)
    if pretrained is None and checkpoint_path is None:
        return build_model(name, **kwargs)
    model = empty_model(name, **kwargs)  # the weights fill it: not initialised only to be overwritten
    if pretrained is not None:
        report = load_pretrained(model, pretrained, progress=progress)
    else:
        report = load_checkpoint(model, checkpoint_path)
    logger.log(logging.WARNING if report.skipped or report.adapted else logging.INFO, "%s", report)
    return model


def _check_weights_tag(pretrained: str, checkpoint_path: str | Path | None) -> None:
    """Refuse a `pretrained` that names a file (those go to `checkpoint_path`), or one given with a
    `checkpoint_path`: a weights tag is never mistaken for a path, nor a path for a tag."""
    if checkpoint_path is not None:
        raise ValueError(
            f"pretrained={pretrained!r} and checkpoint_path={str(checkpoint_path)!r} both name weights; pass one"
        )
    try:
        keyword = weights_keyword(pretrained)
    except ValueError as error:  # meant as a file, and there is none
        message = f"{error}; pretrained= takes a weights tag such as 'imagenet', checkpoint_path= a file"
        raise ValueError(message) from None
    if "checkpoint_path" in keyword:
        raise ValueError(
            f"pretrained={str(pretrained)!r} is a file: pass weights files as checkpoint_path=; pretrained= takes a "
            f"weights tag such as 'imagenet'"
        )


def load_model(checkpoint: str | Path) -> VGG:
    """Rebuild the model saved in a vggnet checkpoint (`best.pt`, `last.pt`) or a vggnet safetensors export,
    with no other input. The model gets the weights, and `model.pretrained_cfg` their classes and preprocessing.

    >>> import vggnet
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> model.pretrained_cfg = {"classes": ["ant", "bee", "cat"], "preprocess": vggnet.Preprocess(32, 32).to_dict()}
    >>> path = vggnet.export(model, "safetensors", out="tiny.safetensors").path
    >>> vggnet.load_model(path).pretrained_cfg["classes"]
    ['ant', 'bee', 'cat']
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
            f"checkpoint_path={str(path)!r}) in Python), naming the variant they were saved from"
        )
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("kwargs"), dict):
        raise ValueError(f"{path}: entry 'model' must be {{'name': str, 'kwargs': dict}}, got {spec!r}")
    try:
        model = empty_model(spec["name"], **spec["kwargs"])
    except TypeError as error:
        raise ValueError(f"{path}: entry 'model' has arguments VGG does not take ({error})") from error
    report = apply_state_dict(model, state_dict, {"source": str(path), **weights_description(meta)})
    if report.skipped:
        raise ValueError(f"{path}: the weights do not fill the model it describes (missing {report.skipped})")
    return model
