"""The VGG family: architecture, registry, factory, official weights and loading."""

from .factory import create_model, load_model
from .features import extract_features
from .loading import (
    CHECKPOINT_FORMAT,
    LoadReport,
    load_weights,
    read_weights_file,
    remap_state_dict,
    safe_torch_load,
)
from .registry import ALIASES, list_models, register_model, resolve_name
from .vgg import CFGS, MIN_INPUT_SIZE, VGG, make_features
from .weights import PRETRAINED, PretrainedWeights, get_pretrained, imagenet_categories

__all__ = [
    "ALIASES",
    "CFGS",
    "CHECKPOINT_FORMAT",
    "MIN_INPUT_SIZE",
    "PRETRAINED",
    "VGG",
    "LoadReport",
    "PretrainedWeights",
    "create_model",
    "extract_features",
    "get_pretrained",
    "imagenet_categories",
    "list_models",
    "load_model",
    "load_weights",
    "make_features",
    "read_weights_file",
    "register_model",
    "remap_state_dict",
    "resolve_name",
    "safe_torch_load",
]
