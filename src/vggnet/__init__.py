"""vggnet: the VGG family of image classifiers (Simonyan & Zisserman, 2014), built, loaded and analysed.

>>> import vggnet
>>> vggnet.list_models()
['vgg11', 'vgg11_bn', 'vgg13', 'vgg13_bn', 'vgg16', 'vgg16_bn', 'vgg19', 'vgg19_bn']
>>> model = vggnet.create_model("vgg16", num_classes=10, pretrained="imagenet")
>>> vggnet.summarize("vgg16").total_params
138357544
"""

from importlib.metadata import PackageNotFoundError, version

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

try:
    __version__ = version("vggnet")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "VGG",
    "LayerSummary",
    "LoadReport",
    "ModelSummary",
    "Predictor",
    "__version__",
    "create_model",
    "describe_models",
    "embed",
    "evaluate",
    "export",
    "feature_grid",
    "grad_cam",
    "extract_features",
    "imagenet_categories",
    "keep_freed_memory",
    "list_models",
    "load_model",
    "load_weights",
    "predict",
    "quantize",
    "save_grad_cam",
    "summarize",
    "train",
    "TrainConfig",
    "TrainResult",
]
