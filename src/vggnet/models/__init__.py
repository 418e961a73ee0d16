"""The VGG family: architecture, registry, factory (and torchvision-style builders), official weights and loading.

The names below are imported on first use, so that the registry's names (`list_models`) come without torch.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {
    ".builders": ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"],
    ".cfgs": ["CFGS", "MIN_INPUT_SIZE"],
    ".factory": ["create_model", "load_model"],
    ".features": ["extract_features"],
    ".loading": [
        "CHECKPOINT_FORMAT",
        "LoadReport",
        "load_weights",
        "read_weights_file",
        "remap_state_dict",
        "safe_torch_load",
        "weights_keyword",
    ],
    ".registry": ["ALIASES", "list_models", "register_model", "resolve_name"],
    ".vgg": ["VGG", "make_features"],
    ".weights": ["PRETRAINED", "PretrainedWeights", "get_pretrained", "imagenet_categories"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time `__getattr__` imports each name on first use
    from .builders import vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn
    from .cfgs import CFGS, MIN_INPUT_SIZE
    from .factory import create_model, load_model
    from .features import extract_features
    from .loading import (
        CHECKPOINT_FORMAT,
        LoadReport,
        load_weights,
        read_weights_file,
        remap_state_dict,
        safe_torch_load,
        weights_keyword,
    )
    from .registry import ALIASES, list_models, register_model, resolve_name
    from .vgg import VGG, make_features
    from .weights import PRETRAINED, PretrainedWeights, get_pretrained, imagenet_categories
