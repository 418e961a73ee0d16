"""What `--model` names: a vggnet checkpoint (self-describing), or a registry name with `--pretrained`.

Classes and preprocessing always come with the weights: from the checkpoint, from the official weights' record,
or (for a plain state dict, which carries neither) class indices and ImageNet preprocessing, said aloud.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.factory import create_model, load_model
from ..models.int8 import int8_module
from ..models.loading import apply_state_dict, read_weights_file, safe_torch_load
from ..models.registry import build_model, list_models
from ..models.vgg import VGG
from ..models.weights import IMAGENET_PREPROCESS
from ..runtime import resolve_device, resolve_precision

logger = logging.getLogger("vggnet")

# What `vggnet quantize` writes (an `.int8.pt` file): fp32 weights plus calibrated int8 ranges.
QUANTIZED_FORMAT = "vggnet-int8"


@dataclass
class LoadedModel:
    """A model ready for inference (eval mode, on its device) with its classes and preprocessing."""

    model: VGG
    classes: list[str]
    preprocess: dict
    device: torch.device
    precision: str
    source: str


def load_for_inference(
    model: str | Path | VGG,
    pretrained: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
) -> LoadedModel:
    """Load what `--model`/`--pretrained` name.

    Args:
        model: A vggnet checkpoint path (`best.pt`, a vggnet `.safetensors`, or an `.int8.pt` from `vggnet
            quantize`), a registry name (then `pretrained` is required), or a VGG whose `pretrained_cfg` holds
            classes and preprocessing.
        pretrained: `"imagenet"` or a weights file, with a registry name.
        device: `auto`, `cpu` or `cuda`.
        precision: `fp32`, `bf16`, `fp16` or `auto`.
    """
    torch_device = resolve_device(device)
    resolved_precision = resolve_precision(precision, torch_device)
    if isinstance(model, VGG):
        network, source = model, model.model_name or "model"
    elif Path(str(model)).expanduser().is_file() and str(model).endswith(".int8.pt"):
        if precision != "auto":
            raise ValueError(
                f"--model {model} is an int8 model; drop --precision {precision} or use the fp32 checkpoint"
            )
        return load_quantized(Path(str(model)).expanduser(), torch.device("cpu") if device == "auto" else torch_device)
    elif Path(str(model)).expanduser().is_file():
        if pretrained is not None:
            raise ValueError(f"--model {model} is a checkpoint, which carries its weights; drop --pretrained")
        network, source = load_model(model), str(model)
    elif str(model) in list_models(include_aliases=True):
        if pretrained is None:
            raise ValueError(
                f"--model {model} has random weights; add --pretrained imagenet (or a weights file), or pass a "
                f"checkpoint such as runs/train/exp/best.pt"
            )
        network, source = _registry_model(str(model), pretrained), f"{model} ({pretrained})"
    else:
        raise ValueError(
            f"--model {model!r} is neither a checkpoint file nor a model name; pass a path such as "
            f"runs/train/exp/best.pt or one of: {', '.join(list_models(include_aliases=True))}"
        )
    config = network.pretrained_cfg or {}
    classes = config.get("classes") or [str(i) for i in range(network.num_classes)]
    if not config.get("classes"):
        logger.warning("the weights carry no class names; using class indices 0..%d", network.num_classes - 1)
    preprocess = config.get("preprocess") or dict(IMAGENET_PREPROCESS)
    network = network.eval().to(device=torch_device, memory_format=torch.channels_last)
    return LoadedModel(network, list(classes), dict(preprocess), torch_device, resolved_precision, source)


def load_quantized(path: Path, device: torch.device) -> LoadedModel:
    """Load an `.int8.pt` written by `vggnet quantize` and rebuild its int8 graph (x86 CPUs)."""
    if device.type != "cpu":
        raise ValueError("int8 models run on the CPU (x86 int8 kernels); use --device cpu or the fp32 checkpoint")
    content = safe_torch_load(path)
    if not isinstance(content, dict) or content.get("format") != QUANTIZED_FORMAT:
        raise ValueError(f"{path} was not written by `vggnet quantize`; pass the fp32 checkpoint instead")
    for key, kind in (
        ("model", dict),
        ("state_dict", dict),
        ("observers", dict),
        ("classes", list),
        ("preprocess", dict),
    ):
        if not isinstance(content.get(key), kind):
            raise ValueError(f"{path}: entry {key!r} must be a {kind.__name__}")
    model = build_model(content["model"]["name"], **content["model"]["kwargs"])
    apply_state_dict(model, content["state_dict"], {"source": str(path)})
    module = int8_module(model, content["observers"], content["preprocess"]["img_size"])
    return LoadedModel(module, content["classes"], content["preprocess"], device, "int8", str(path))


def require_vgg(loaded: LoadedModel, verb: str) -> VGG:
    """The loaded VGG, or a clear error for an int8 model (a converted graph, not a VGG)."""
    if not isinstance(loaded.model, VGG):
        raise ValueError(f"{verb} needs the fp32 model; {loaded.source} is an int8 program (predict and eval run it)")
    return loaded.model


def _registry_model(name: str, pretrained: str | Path) -> VGG:
    path = Path(str(pretrained)).expanduser()
    if not path.is_file():
        return create_model(name, pretrained=pretrained)
    state_dict, meta = read_weights_file(path)
    if "model" in meta:
        raise ValueError(f"{path} is a vggnet checkpoint: pass it as --model {path} (no --pretrained)")
    head, num_classes = head_of(state_dict)
    model = create_model(name, num_classes=num_classes, head=head)
    apply_state_dict(model, state_dict, {"source": str(path)})
    return model


def head_of(state_dict: dict[str, torch.Tensor]) -> tuple[str, int]:
    """(head, number of classes) of a VGG state dict, from its last layer's shape."""
    keys = {key.removeprefix("module.").removeprefix("_orig_mod."): value for key, value in state_dict.items()}
    if "classifier.6.weight" in keys:
        return "classic", keys["classifier.6.weight"].shape[0]
    if "classifier.1.weight" in keys:
        return "compact", keys["classifier.1.weight"].shape[0]
    raise ValueError("the weights have no classifier (features only); they cannot classify: train a head first")
