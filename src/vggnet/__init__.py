"""vggnet: the VGG family of image classifiers (Simonyan & Zisserman, 2014), built, loaded and analysed.

>>> import vggnet
>>> vggnet.list_models()
['vgg11', 'vgg11_bn', 'vgg13', 'vgg13_bn', 'vgg16', 'vgg16_bn', 'vgg19', 'vgg19_bn']
>>> model = vggnet.create_model("vgg16", num_classes=10, pretrained="imagenet")
>>> vggnet.summarize("vgg16").total_params
138357544

The names below are imported on first use (`vggnet.create_model` imports torch then), so that `import vggnet`
itself costs next to nothing.
"""

from typing import TYPE_CHECKING

from ._version import __version__
from .lazy import lazy_exports

_EXPORTS = {
    ".allocator": ["keep_freed_memory"],
    ".analysis": ["LayerSummary", "ModelSummary", "describe_models", "summarize"],
    ".infer.embed": ["embed"],
    ".infer.evaluate": ["evaluate"],
    ".infer.export": ["export"],
    ".infer.predict": ["Predictor", "predict"],
    ".infer.quantize": ["quantize"],
    ".infer.visualize": ["feature_grid", "grad_cam", "save_grad_cam"],
    ".models": [
        "VGG",
        "LoadReport",
        "create_model",
        "extract_features",
        "imagenet_categories",
        "list_models",
        "load_model",
        "load_weights",
    ],
    ".training": ["TrainConfig", "TrainResult", "train"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = ["__version__", *sorted(name for names in _EXPORTS.values() for name in names)]

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time `__getattr__` imports each name on first use
    from .allocator import keep_freed_memory
    from .analysis import LayerSummary, ModelSummary, describe_models, summarize
    from .infer.embed import embed
    from .infer.evaluate import evaluate
    from .infer.export import export
    from .infer.predict import Predictor, predict
    from .infer.quantize import quantize
    from .infer.visualize import feature_grid, grad_cam, save_grad_cam
    from .models import (
        VGG,
        LoadReport,
        create_model,
        extract_features,
        imagenet_categories,
        list_models,
        load_model,
        load_weights,
    )
    from .training import TrainConfig, TrainResult, train
