"""vggnet: the VGG family of image classifiers (Simonyan & Zisserman, 2014), built, loaded and analysed.

>>> import vggnet
>>> vggnet.list_models()
['vgg11', 'vgg11_bn', 'vgg13', 'vgg13_bn', 'vgg16', 'vgg16_bn', 'vgg19', 'vgg19_bn']
>>> model = vggnet.create_model("vgg16", num_classes=10, pretrained="imagenet")  # doctest: +SKIP
>>> vggnet.summarize("vgg16").total_params
138357544

The names below are imported on first use (`vggnet.create_model` imports torch then), so that `import vggnet`
itself costs next to nothing.
"""

from typing import TYPE_CHECKING

from ._version import __version__
from .lazy import lazy_exports

_EXPORTS = {
    ".analysis": ["LayerSummary", "ModelSummary", "describe_models", "summarize"],
    ".data.preprocess": ["Preprocess"],
    ".infer.embed": ["Embeddings", "embed"],
    ".infer.evaluate": ["evaluate"],
    ".infer.export": ["ExportResult", "export"],
    ".infer.predict": ["Predictor", "predict"],
    ".infer.quantize": ["QuantizeResult", "quantize"],
    ".infer.source": ["LoadedModel", "load_for_inference"],
    ".infer.visualize": ["GradCam", "feature_grid", "grad_cam", "save_grad_cam"],
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
    from .analysis import LayerSummary, ModelSummary, describe_models, summarize
    from .data.preprocess import Preprocess
    from .infer.embed import Embeddings, embed
    from .infer.evaluate import evaluate
    from .infer.export import ExportResult, export
    from .infer.predict import Predictor, predict
    from .infer.quantize import QuantizeResult, quantize
    from .infer.source import LoadedModel, load_for_inference
    from .infer.visualize import GradCam, feature_grid, grad_cam, save_grad_cam
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
