"""What `--model` names: a vggnet checkpoint (self-describing), or a registry name with `--pretrained`.

Classes and preprocessing always come with the weights: from the checkpoint, from the official weights' record,
or (for a plain state dict, which carries neither) class indices and ImageNet preprocessing, said aloud.
"""

import copy
import difflib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.preprocess import Preprocess
from ..models.factory import create_model, rebuild_model
from ..models.int8 import int8_module
from ..models.loading import (
    QUANTIZED_FORMAT,
    apply_state_dict,
    empty_model,
    file_or_name,
    read_weights_file,
    weights_keyword,
)
from ..models.registry import list_models, resolve_name
from ..models.vgg import VGG
from ..outputs import output_file
from ..runtime import resolve_device, resolve_precision

logger = logging.getLogger("vggnet")


@dataclass
class LoadedModel:
    """A model ready for inference (eval mode, on its device) with its classes and preprocessing: what
    `load_for_inference` returns, and what every verb takes in place of a model to load.

    >>> import vggnet
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> model.pretrained_cfg = {"classes": ["ant", "bee", "cat"], "preprocess": vggnet.Preprocess(32, 32).to_dict()}
    >>> loaded = vggnet.load_for_inference(model, device="cpu", precision="fp32")
    >>> loaded.classes, loaded.preprocess.img_size, loaded.precision
    (['ant', 'bee', 'cat'], 32, 'fp32')
    >>> records = vggnet.predict(loaded, [], topk=1)  # loaded once, for as many verbs as you like
    """

    model: VGG
    classes: list[str]
    preprocess: Preprocess
    device: torch.device
    precision: str
    source: str


def load_for_inference(
    model: str | Path | VGG | LoadedModel,
    pretrained: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
) -> LoadedModel:
    """Load what `--model`/`--pretrained` name, for inference; a `LoadedModel` is returned as it is (it keeps the
    device and precision it was loaded with).

    >>> import vggnet
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> loaded = vggnet.load_for_inference(model, device="cpu")  # weights with no record: indices, ImageNet's
    >>> loaded.classes, loaded.preprocess == vggnet.Preprocess.imagenet()
    (['0', '1', '2'], True)
    >>> loaded = vggnet.load_for_inference("runs/train/exp/best.pt")  # doctest: +SKIP
    >>> loaded = vggnet.load_for_inference("vgg16", pretrained="imagenet")  # doctest: +SKIP

    Args:
        model: A vggnet checkpoint path (`best.pt`, a vggnet `.safetensors`, or an int8 model from `vggnet
            quantize`: files are recognised by content, whatever their name), a registry name (then `pretrained`
            is required), a VGG whose `pretrained_cfg` holds classes and preprocessing, or a `LoadedModel`. Your
            own VGG is never changed: when it is not in eval mode on `device` in channels_last, a copy is.
        pretrained: `"imagenet"` or a weights file, with a registry name.
        device: `auto`, `cpu` or `cuda`.
        precision: `fp32`, `bf16`, `fp16` or `auto`.

    Raises:
        ValueError: `model` names nothing loadable, or its preprocessing record is damaged.
    """
    if isinstance(model, LoadedModel):
        return model
    torch_device = resolve_device(device)
    resolved_precision = resolve_precision(precision, torch_device)
    if isinstance(model, VGG):
        network, source = inference_ready(model, torch_device), model.model_name or "model"
    else:
        named = model_source(model)
        if isinstance(named, Path):
            if pretrained is not None:
                raise ValueError(f"--model {model} is a checkpoint, which carries its weights; drop --pretrained")
            state_dict, meta = read_weights_file(named)
            if meta.get("format") == QUANTIZED_FORMAT:
                if precision != "auto":
                    raise ValueError(
                        f"--model {model} is an int8 model; drop --precision {precision} or use the fp32 checkpoint"
                    )
                int8_device = torch.device("cpu") if device == "auto" else torch_device
                return quantized_model(state_dict, meta, named, int8_device)
            network, source = rebuild_model(state_dict, meta, named), str(model)
        else:
            if pretrained is None:
                raise ValueError(
                    f"--model {model} has random weights; add --pretrained imagenet (or a weights file), or pass a "
                    f"checkpoint such as runs/train/exp/best.pt"
                )
            network, source = _registry_model(named, pretrained), f"{model} ({pretrained})"
        # A model built here is ours to change in place.
        network = network.eval().to(device=torch_device, memory_format=torch.channels_last)
    config = network.pretrained_cfg or {}
    classes = config.get("classes") or [str(i) for i in range(network.num_classes)]
    if not config.get("classes"):
        logger.warning("the weights carry no class names; using class indices 0..%d", network.num_classes - 1)
    preprocess = _preprocess(config["preprocess"], source) if config.get("preprocess") else Preprocess.imagenet()
    return LoadedModel(network, list(classes), preprocess, torch_device, resolved_precision, source)


def _preprocess(record: dict, source: str | Path) -> Preprocess:
    """The preprocessing of a record that came with the weights from `source`, named in any error."""
    try:
        return Preprocess.from_checkpoint(record)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


def model_source(model: str | Path) -> Path | str:
    """What `--model` names: the checkpoint file (a Path) or the registry name (a str).

    A registry name (`"vgg16"`) always means the architecture, even where a file of that name exists (pass
    `"./vgg16"` for the file); a `Path` is always a file.

    Raises:
        ValueError: no such file (for a value that looks like a path), or neither a file nor a model name.
    """
    names = list_models(include_aliases=True)
    named = file_or_name(model, names)
    if isinstance(named, Path) or named in names:
        return named
    close = difflib.get_close_matches(named, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(
        f"--model {named!r} is neither a checkpoint file nor a model name; {hint}pass a path such as "
        f"runs/train/exp/best.pt or one of: {', '.join(names)}"
    )


def inference_ready(model: VGG, device: torch.device) -> VGG:
    """`model` in eval mode on `device` with channels_last weights: itself when it already is, otherwise a copy,
    so that a caller's own model is never switched to eval mode, moved or converted behind their back."""
    if device.type == "cuda" and device.index is None:  # tensors on CUDA carry their device's index
        device = torch.device("cuda", torch.cuda.current_device())
    tensors = [*model.parameters(), *model.buffers()]
    ready = (
        not any(module.training for module in model.modules())
        and all(tensor.device == device for tensor in tensors)
        and all(t.is_contiguous(memory_format=torch.channels_last) for t in tensors if t.ndim == 4)
    )
    if ready:
        return model
    return copy.deepcopy(model).eval().to(device=device, memory_format=torch.channels_last)


def output_path(out: str | Path | None, model: str | Path | VGG | LoadedModel, suffix: str, verb: str) -> Path:
    """Where `export` and `quantize` write, decided before the model loads so that a clash is reported at once.

    Args:
        out: The path asked for (written even if a file is there: the user named it), or None for the default:
            beside the checkpoint (`best.pt` -> `best<suffix>`), else `runs/<verb>/<model name><suffix>`.
        model: What `--model` names, a VGG or a loaded model.
        suffix: The output's suffix, e.g. `.onnx`.
        verb: `export` or `quantize`.

    Raises:
        ValueError: `out` cannot be written (see `vggnet.outputs.output_file`), the default path is taken (it is
            never overwritten), or `model` names nothing.
    """
    if out is not None:
        return output_file(out, "--out")
    if isinstance(model, LoadedModel):
        model = model.model
    if isinstance(model, torch.nn.Module):  # a VGG, or an int8 program (which has no name)
        name = getattr(model, "model_name", None) or "model"
        path = Path("runs") / verb / f"{name}{suffix}"
    else:
        named = model_source(model)
        if isinstance(named, Path):
            path = named.with_name(named.stem + suffix)
        else:
            path = Path("runs") / verb / f"{resolve_name(named)}{suffix}"
    if path.exists():
        raise ValueError(f"{path} already exists; pass --out to choose where to write (or remove the old file)")
    return path


def quantized_model(state_dict: dict[str, torch.Tensor], meta: dict, path: Path, device: torch.device) -> LoadedModel:
    """The int8 program of an int8 file written by `vggnet quantize` (x86 CPUs), from `read_weights_file`'s
    contents (or from what `quantize` is about to write at `path`)."""
    if device.type != "cpu":
        raise ValueError("int8 models run on the CPU (x86 int8 kernels); use --device cpu or the fp32 checkpoint")
    for key, kind in (("model", dict), ("observers", dict), ("classes", list), ("preprocess", dict)):
        if not isinstance(meta.get(key), kind):
            raise ValueError(f"{path}: entry {key!r} must be a {kind.__name__}")
    preprocess = _preprocess(meta["preprocess"], path)
    model = empty_model(meta["model"]["name"], **meta["model"]["kwargs"])
    apply_state_dict(model, state_dict, {"source": str(path)})
    module = int8_module(model, meta["observers"], preprocess.img_size)
    return LoadedModel(module, meta["classes"], preprocess, device, "int8", str(path))


def require_vgg(loaded: LoadedModel, verb: str) -> VGG:
    """The loaded VGG, or a clear error for an int8 model (a converted graph, not a VGG)."""
    if not isinstance(loaded.model, VGG):
        raise ValueError(f"{verb} needs the fp32 model; {loaded.source} is an int8 program (predict and eval run it)")
    return loaded.model


def _registry_model(name: str, pretrained: str | Path) -> VGG:
    """The registry model `name` with the weights `--pretrained` names: the official ones of a tag, or a weights
    file's, whose head (classic or compact, and class count) the model takes."""
    keyword = weights_keyword(pretrained)
    if "pretrained" in keyword:
        return create_model(name, **keyword)
    path = keyword["checkpoint_path"]
    state_dict, meta = read_weights_file(path)
    if "model" in meta:
        raise ValueError(f"{path} is a vggnet checkpoint: pass it as --model {path} (no --pretrained)")
    head, num_classes = head_of(state_dict)
    model = empty_model(name, num_classes=num_classes, head=head)
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
