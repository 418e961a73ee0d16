"""Load weights into a VGG: official ImageNet weights by tag, or a local `.pth`/`.pt`/`.safetensors` file.

A local file may be a plain state dict (torchvision's, the reference repository's), a vggnet checkpoint, a DDP
or `torch.compile` state dict (`module.` / `_orig_mod.` prefixes), or a trainer's dict holding one under
`state_dict`, `model` or `model_state_dict`. Files are recognised by content, whatever their name: safetensors
files by their header, and the rest read with `torch.load(weights_only=True)`, so that nothing is unpickled beyond
tensors and plain Python values. TorchScript and ONNX exports are refused with the file to pass instead.

>>> import torch, vggnet
>>> source = vggnet.create_model("vgg11", num_classes=10, head="compact", width_mult=0.125)
>>> torch.save(source.state_dict(), "vgg11_digits.pth")
>>> model = vggnet.create_model("vgg11", num_classes=5, head="compact", width_mult=0.125)
>>> report = vggnet.load_weights(model, "vgg11_digits.pth")
>>> len(report.loaded), report.skipped  # the last layer has 5 outputs, not 10: it stays freshly initialised
(16, ['classifier.1.weight', 'classifier.1.bias'])
"""

import difflib
import json
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file as load_safetensors

from .registry import build_model, list_models
from .vgg import VGG, init_weights
from .weights import PRETRAINED, fetch_pretrained, get_pretrained

CHECKPOINT_FORMAT = "vggnet-checkpoint"
# What `vggnet quantize` writes (an `.int8.pt` file): fp32 weights plus calibrated int8 ranges.
QUANTIZED_FORMAT = "vggnet-int8"
# The entries besides `state_dict` that describe the model, in each of vggnet's file formats (the `format` entry).
_META_KEYS = {
    CHECKPOINT_FORMAT: ("model", "classes", "preprocess"),
    QUANTIZED_FORMAT: ("model", "classes", "preprocess", "observers"),
}
# Suffixes of weights files: a value ending so names a file, never a model or a tag (`.int8.pt` ends in `.pt`).
WEIGHTS_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin")
# The safetensors metadata field (a JSON string) that carries model, classes and preprocess in vggnet's exports.
SAFETENSORS_METADATA_KEY = "vggnet"

# Wrappers that prefix every key: DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# How torch.load(weights_only=True) names an object it refused to unpickle.
_FOREIGN_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
# Where trainers commonly keep the state dict inside a bigger checkpoint dict.
_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")
# How a zip archive starts: torch.save's files and TorchScript archives are zip archives.
_ZIP_MAGIC = b"PK\x03\x04"
# An ONNX file is a protobuf ModelProto, serialised in field order: field 1, ir_version, a small varint (tag byte
# 0x08), then the tag byte of another of its fields (producer_name, producer_version, domain, model_version,
# doc_string, graph or opset_import). torch.save's files start otherwise (a zip archive, or a pickle's 0x80).
_ONNX_SECOND_TAGS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42}


@dataclass
class LoadReport:
    """What `load_weights` did: which tensors loaded, which head tensors were left freshly initialised, and
    which were adapted (the first convolution, for another number of input channels).

    >>> import torch, vggnet
    >>> torch.save(vggnet.create_model("vgg11", width_mult=0.125).state_dict(), "rgb.pth")
    >>> grey = vggnet.create_model("vgg11", in_chans=1, width_mult=0.125)
    >>> print(vggnet.load_weights(grey, "rgb.pth"))
    loaded 22 tensors from rgb.pth; adapted features.0.weight to the model's input channels
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"loaded {len(self.loaded)} tensors from {self.source}"
        if self.adapted:
            text += f"; adapted {', '.join(self.adapted)} to the model's input channels"
        if self.skipped:
            text += f"; freshly initialised {', '.join(self.skipped)} (the weights' head has other shapes)"
        return text


def looks_like_path(text: str) -> bool:
    """Whether `text` is meant as a file rather than a model name or weights tag: it has a folder separator or a
    weights file's suffix, or starts with `.` or `~`."""
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return bool(separators & set(text)) or text.startswith((".", "~")) or Path(text).suffix in WEIGHTS_SUFFIXES


def no_such_file(text: str | Path) -> str:
    """The message for a weights file that is not there: `no such file: PATH`, and the most similar weights file
    in that folder (or the weights files in it, when PATH is a folder)."""
    path = Path(str(text)).expanduser()
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix in WEIGHTS_SUFFIXES)
        offer = f"; pass a weights file in it: {', '.join(inside)}" if inside else ", with no weights file in it"
        return f"{text} is a folder, not a weights file{offer}"
    if not path.parent.is_dir():
        return f"no such file: {text} (there is no folder {path.parent})"
    # Only weights files are candidates: a folder of images offers nothing to suggest, and would be slow to match.
    candidates = [p.name for p in path.parent.iterdir() if p.suffix in WEIGHTS_SUFFIXES and p.is_file()]
    close = difflib.get_close_matches(path.name, candidates, n=1)
    hint = f"; did you mean {str(Path(str(text)).with_name(close[0]))}?" if close else "; check the path"
    return f"no such file: {text}{hint}"


def file_or_name(value: str | Path, names: Collection[str]) -> Path | str:
    """What a user's value names: one of `names` (a model name, a weights tag), or a file.

    A str in `names` always means the name, even where a file of that name exists (pass `"./imagenet"` for the
    file); a `Path` always means a file. An existing file, or a value that looks like a path (see
    `looks_like_path`), is a file; any other string is returned as it is, for the caller to report as unknown.

    Returns:
        The name (a str) or the file (a Path).

    Raises:
        ValueError: `value` is meant as a file and no such file exists; the message suggests the closest file.
    """
    text = str(value)
    if isinstance(value, str) and text in names:
        return text
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if isinstance(value, Path) or looks_like_path(text) or path.is_dir():
        raise ValueError(no_such_file(text))
    return text


def weights_keyword(value: str | Path | None) -> dict[str, str | Path]:
    """The `create_model` keyword for a user's `--pretrained` value, which names a weights tag or a file (see
    `file_or_name`: `"imagenet"` is always the tag, `"./imagenet"` a file).

    >>> weights_keyword("imagenet")
    {'pretrained': 'imagenet'}
    >>> weights_keyword(None)
    {}

    Returns:
        `{"pretrained": tag}`, `{"checkpoint_path": path}`, or `{}` for None.
    """
    if value is None:
        return {}
    named = file_or_name(value, {tag for _, tag in PRETRAINED})
    return {"checkpoint_path": named} if isinstance(named, Path) else {"pretrained": named}


def read_weights_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a weights file into (state dict, metadata).

    The metadata of a vggnet file holds its `format` (`vggnet-checkpoint` or `vggnet-int8`: files are recognised
    by content, whatever their name) and its `model`, `classes` and `preprocess` entries (and an int8 file's
    `observers`); that of a safetensors file exported by vggnet holds the entries of its `vggnet` metadata field.
    It is empty for other files.

    A file is read as safetensors when its header says so, or when it is named `.safetensors` (so that a damaged
    one is reported as such), and with `safe_torch_load` otherwise.

    Raises:
        ValueError: the file is missing, damaged, not a checkpoint (an export included), or carries pickled Python
            objects.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(no_such_file(path))
    if path.suffix == ".safetensors" or _is_safetensors(path):
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
            state_dict = load_safetensors(str(path))
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{path} is not a readable safetensors file ({error}); re-export it") from error
        try:
            meta = json.loads(header.get(SAFETENSORS_METADATA_KEY, "{}"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: its '{SAFETENSORS_METADATA_KEY}' metadata is not JSON ({error})") from error
        return state_dict, meta if isinstance(meta, dict) else {}
    return _state_dict_of(safe_torch_load(path), path)


def safe_torch_load(path: str | Path) -> object:
    """`torch.load(path, weights_only=True)` onto the CPU, with errors that say what is wrong.

    Raises:
        ValueError: the file is damaged or not a PyTorch file (a TorchScript or ONNX export is named as such), or it
            carries pickled Python objects (which are never unpickled: they could run code).
    """
    exported = _export_format(Path(path))
    if exported is not None:  # told before torch.load, which warns about TorchScript and advises weights_only=False
        raise ValueError(
            f"{path} is an export to {exported} (as `vggnet export --format {exported.lower()}` writes); vggnet loads "
            f"checkpoints (best.pt, last.pt) and weights files (.pth, .pt, .safetensors): pass the checkpoint it was "
            f"exported from"
        )
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of damaged files before failing on them: the error says more
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        foreign = _FOREIGN_GLOBAL.search(str(error))
        if foreign is None:
            raise ValueError(
                f"{path} is not a readable PyTorch checkpoint; the file is damaged or of another format"
            ) from error
        raise ValueError(
            f"refusing to load {path}: it holds pickled Python objects ({foreign.group(1)}), which could run code "
            f"when loaded. Load only tensors: re-save it where you trust it, with torch.save(model.state_dict(), ...) "
            f"or as .safetensors"
        ) from error
    except FileNotFoundError as error:
        raise ValueError(no_such_file(path)) from error
    except Exception as error:  # torch.load raises RuntimeError, EOFError, zipfile errors... on damaged files
        raise ValueError(
            f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {error}); the file is damaged "
            f"or of another format"
        ) from error


def _first_bytes(path: Path, count: int) -> bytes:
    """The first `count` bytes of a file (fewer for a shorter file; none for one that cannot be read, for the
    reader that follows to report)."""
    try:
        with open(path, "rb") as f:
            return f.read(count)
    except OSError:
        return b""


def _is_safetensors(path: Path) -> bool:
    """Whether a file starts as a safetensors file does: the header's length (8 bytes, little-endian), within the
    file, then the header, a JSON object."""
    head = _first_bytes(path, 9)
    return head[8:] == b"{" and 8 + int.from_bytes(head[:8], "little") <= path.stat().st_size


def _export_format(path: Path) -> str | None:
    """`"TorchScript"` or `"ONNX"` for a file in one of those formats, told by content; None for any other file,
    and for one that cannot be read (`torch.load` then says what is wrong)."""
    head = _first_bytes(path, len(_ZIP_MAGIC))
    if head == _ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (OSError, zipfile.BadZipFile):
            return None
        # torch.load's own test: a TorchScript archive has constants.pkl in its top folder.
        return "TorchScript" if any(name.partition("/")[2] == "constants.pkl" for name in names) else None
    if len(head) > 2 and head[0] == 0x08 and 0 < head[1] < 0x80 and head[2] in _ONNX_SECOND_TAGS:
        return "ONNX"
    return None


def _state_dict_of(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    if isinstance(obj, Mapping) and obj.get("format") in _META_KEYS:
        keys = ("format", *_META_KEYS[obj["format"]])
        return _tensors_only(obj.get("state_dict"), path), {key: obj[key] for key in keys if key in obj}
    if isinstance(obj, Mapping):
        for key in _STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping):
                return _tensors_only(obj[key], path), {}
    return _tensors_only(obj, path), {}


def _tensors_only(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(
            f"{path} holds no state dict of tensors (found {keys}); save one with torch.save(model.state_dict(), ...)"
        )
    return dict(obj)


def remap_state_dict(state_dict: Mapping[str, torch.Tensor], model: VGG) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Convert another VGG state dict to `model`'s keys and shapes.

    Maps: strips DDP `module.` and `torch.compile` `_orig_mod.` prefixes; adapts the first convolution to another
    number of input channels (summed for 1 channel, repeated and rescaled otherwise, as timm does); drops
    `classifier` tensors whose name or shape differs from the model's (another class count or head), which then
    keep their fresh initialisation. BatchNorm's `num_batches_tracked` may be absent (old torchvision files).

    Raises:
        ValueError: the `features` tensors do not fit the model (another depth, width or norm layer), naming the
            keys and, when one fits, the variant the weights belong to.
    """
    state_dict = {_strip_prefixes(key): value for key, value in state_dict.items()}
    expected = model.state_dict()
    report = LoadReport(source="")
    first_conv = "features.0.weight"
    if first_conv in state_dict and first_conv in expected:
        adapted = _adapt_input_conv(state_dict[first_conv], expected[first_conv].shape[1])
        if adapted is not state_dict[first_conv]:
            state_dict[first_conv] = adapted
            report.adapted.append(first_conv)

    def fits(key: str) -> bool:
        return key in expected and state_dict[key].shape == expected[key].shape

    feature_keys = {k for k in expected if k.startswith("features.") and not k.endswith("num_batches_tracked")}
    given_features = {k for k in state_dict if k.startswith("features.")}
    missing = sorted(feature_keys - given_features)
    wrong = sorted(k for k in given_features if not fits(k))
    if missing or wrong:
        raise ValueError(_mismatch_message(state_dict, model, missing, wrong))
    others = sorted(k for k in state_dict if not k.startswith("features.") and not k.startswith("classifier."))
    if others:
        raise ValueError(f"the weights carry tensors that no VGG has: {', '.join(others[:8])}")

    remapped = {k: v for k, v in state_dict.items() if fits(k)}
    report.loaded = sorted(remapped)
    report.skipped = [k for k in expected if k.startswith("classifier.") and k not in remapped]
    return remapped, report


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def _adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Fit a first-convolution weight (out, c, k, k) to `in_chans` input channels, as timm does: summed over
    the channels for 1 (a grey image then gives the original model's response to that image in colour), tiled and
    scaled by c/in_chans otherwise (exactly the same response again when in_chans is a multiple of c)."""
    channels = weight.shape[1]
    if weight.ndim != 4 or channels == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_chans // channels)
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (channels / in_chans)


def _mismatch_message(state_dict: dict, model: VGG, missing: list[str], wrong: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    for key in wrong[:4]:
        shape = f"{tuple(state_dict[key].shape)}"
        parts.append(f"unexpected {key}" if key not in model.state_dict() else f"{key} has shape {shape}")
    name = model.model_name or "this model"
    hint = _guess_variant(state_dict)
    fix = f"create the model as {hint!r}" if hint else "create the model the weights were saved from"
    return f"the weights do not fit {name}: {'; '.join(parts)}; {fix}"


def _guess_variant(state_dict: dict[str, torch.Tensor]) -> str | None:
    """The registry name whose `features` have exactly these tensor shapes, if any."""
    given = {k: tuple(v.shape) for k, v in state_dict.items() if k.startswith("features.")}
    given = {k: v for k, v in given.items() if not k.endswith("num_batches_tracked")}
    in_chans = given.get("features.0.weight", (0, 3))[1]
    for name in list_models():
        candidate = empty_model(name, in_chans=in_chans, head="compact")
        shapes = {k: tuple(v.shape) for k, v in candidate.state_dict().items() if k.startswith("features.")}
        if {k: v for k, v in shapes.items() if not k.endswith("num_batches_tracked")} == given:
            return name
    return None


def load_weights(model: VGG, source: str | Path, progress: bool = True) -> LoadReport:
    """Load weights named by a user's value into `model` in place and return what was loaded.

    >>> import torch, vggnet
    >>> torch.save(vggnet.create_model("vgg11", head="compact", width_mult=0.125).state_dict(), "small.pth")
    >>> model = vggnet.create_model("vgg11", head="compact", width_mult=0.125)
    >>> vggnet.load_weights(model, "small.pth").skipped, model.pretrained_cfg
    ([], {'source': 'small.pth'})
    >>> vggnet.load_weights(model, "imagenet")  # doctest: +SKIP

    Args:
        model: The model to fill; its head may differ from the weights' (see `remap_state_dict`).
        source: A tag of the official weights (`"imagenet"`) or the path of a weights file (see `weights_keyword`:
            `"imagenet"` is always the tag, `"./imagenet"` a file).
        progress: Show a progress bar while downloading.

    Sets `model.pretrained_cfg` to the source, and where known the weights' classes and preprocessing; classes
    are kept only when the model's class count equals theirs.
    """
    keyword = weights_keyword(source)
    if "checkpoint_path" in keyword:
        return load_checkpoint(model, keyword["checkpoint_path"])
    return load_pretrained(model, keyword["pretrained"], progress)


def load_checkpoint(model: VGG, path: str | Path) -> LoadReport:
    """`load_weights` from a weights file (any of the module docstring's layouts)."""
    path = Path(path).expanduser()
    state_dict, meta = read_weights_file(path)
    return apply_state_dict(model, state_dict, {"source": str(path), **weights_description(meta)})


def load_pretrained(model: VGG, tag: str, progress: bool = True) -> LoadReport:
    """`load_weights` of the official weights `tag` for the model's variant, downloaded (and hash-checked) into
    the torch hub cache on first use."""
    if model.model_name is None:
        raise ValueError(f"pretrained={tag!r} needs a registry model; build it with vggnet.create_model")
    weights = get_pretrained(model.model_name, tag)
    state_dict, _ = read_weights_file(fetch_pretrained(weights, progress=progress))
    pretrained_cfg = {"source": weights.url, "classes": weights.categories, "preprocess": weights.preprocess.to_dict()}
    return apply_state_dict(model, state_dict, pretrained_cfg)


def weights_description(meta: dict) -> dict:
    """The entries of `read_weights_file`'s metadata that describe the weights: classes and preprocessing."""
    return {key: meta[key] for key in ("classes", "preprocess") if key in meta}


def empty_model(name: str, **kwargs) -> VGG:
    """A registry model whose tensors are not allocated yet (on the meta device), for `apply_state_dict` to fill
    with a file's weights: initialising a vgg16 only to overwrite it took about a second of `vggnet predict`'s
    start-up."""
    with torch.device("meta"):
        return build_model(name, **kwargs)


def apply_state_dict(model: VGG, state_dict: dict[str, torch.Tensor], pretrained_cfg: dict) -> LoadReport:
    """Remap `state_dict` onto `model` (see `remap_state_dict`), load it, and set `model.pretrained_cfg`.

    An `empty_model` takes the tensors themselves (no copy) onto the default device, and what they leave out is
    initialised as a new model's (a new head by `model.init`'s scheme, BatchNorm's step counters at 0)."""
    remapped, report = remap_state_dict(state_dict, model)
    report.source = pretrained_cfg["source"]
    expected = model.state_dict()
    empty = any(parameter.is_meta for parameter in model.parameters())
    if empty:
        device = torch.get_default_device()
        remapped = {key: value.to(device, expected[key].dtype).contiguous() for key, value in remapped.items()}
    missing, unexpected = model.load_state_dict(remapped, strict=False, assign=empty)
    batch_counters = {key for key in expected if key.endswith("num_batches_tracked")}  # absent from older files
    assert not unexpected and set(missing) <= set(report.skipped) | batch_counters, (missing, unexpected)
    if empty:
        _initialise_missing(model, device)
    pretrained_cfg = dict(pretrained_cfg)
    if report.skipped or len(pretrained_cfg.get("classes") or []) != model.num_classes:
        pretrained_cfg.pop("classes", None)
    model.pretrained_cfg = pretrained_cfg
    return report


def _initialise_missing(model: VGG, device: torch.device) -> None:
    """Allocate and initialise the tensors of an `empty_model` that no weights filled: whole layers (a new head),
    and BatchNorm step counters absent from older files."""
    for module in model.modules():
        own = dict(chain(module.named_parameters(recurse=False), module.named_buffers(recurse=False)))
        unfilled = {name for name, tensor in own.items() if tensor.is_meta}
        if not unfilled:
            continue
        if unfilled == set(own):
            module.to_empty(device=device, recurse=False)
            init_weights(module, model.init)
        else:
            assert unfilled == {"num_batches_tracked"}, f"{type(module).__name__} left partly empty: {unfilled}"
            module.num_batches_tracked = torch.zeros((), dtype=torch.long, device=device)
