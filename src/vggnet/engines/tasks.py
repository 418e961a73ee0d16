"""What a batch job computes per image, and the Parquet columns it writes: `PredictTask` (the top-k classes) and
`EmbedTask` (a feature vector). Every row also has `path` and `error` (null unless the input failed, and then the
task's own columns are null). A task called on a batch of images returns its columns as Arrow arrays of the types
`columns()` names. A `TaskSpec` says which task on which model, so that an engine's workers can build it where they
run."""

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..extras import require
from ..infer.embed import Embedder
from ..infer.predict import top_classes
from ..infer.runner import InferenceRunner
from ..infer.source import LoadedModel, load_for_inference
from ..models.vgg import VGG


def _arrow():
    return require("pyarrow", "parquet", "Parquet output")


class PredictTask:
    """`top_class`, `top_index` and `top_prob` lists per image, most probable first: `predict`'s records as
    columns."""

    name = "predict"

    def __init__(self, loaded: LoadedModel, topk: int = 5) -> None:
        if topk < 1:
            raise ValueError(f"--topk must be at least 1, got {topk}")
        self.loaded, self.classes = loaded, loaded.classes
        self.topk = min(topk, len(self.classes))
        self.runner = InferenceRunner(loaded)

    def settings(self) -> dict:
        return {"topk": self.topk}

    def columns(self) -> dict:
        pa = _arrow()
        return {
            "top_class": pa.list_(pa.string()),
            "top_index": pa.list_(pa.int32()),
            "top_prob": pa.list_(pa.float32()),
        }

    def metadata(self) -> dict:
        return {"task": self.name, "topk": self.topk, "classes": self.classes}

    def __call__(self, images: torch.Tensor) -> dict:
        tops = top_classes(self.runner(images), self.classes, self.topk)
        fields, kinds = {"top_class": "class", "top_index": "index", "top_prob": "prob"}, self.columns()
        return {
            column: _arrow().array([[entry[field] for entry in top] for top in tops], kinds[column])
            for column, field in fields.items()
        }


class EmbedTask:
    """`embedding`, a fixed-size float32 list per image (`layer` and `dim` in the file metadata)."""

    name = "embed"

    def __init__(self, loaded: LoadedModel, layer: str | None = None, normalize: bool = False) -> None:
        self.loaded = loaded
        self.embedder = Embedder(loaded, layer, normalize)
        size = loaded.preprocess.img_size
        self.dim = self.embedder(torch.zeros(1, 3, size, size)).shape[1]

    def settings(self) -> dict:
        return {"layer": self.embedder.layer, "normalize": self.embedder.normalize}

    def columns(self) -> dict:
        pa = _arrow()
        return {"embedding": pa.list_(pa.float32(), self.dim)}

    def metadata(self) -> dict:
        return {"task": self.name, "layer": self.embedder.layer, "dim": self.dim, "normalize": self.embedder.normalize}

    def __call__(self, images: torch.Tensor) -> dict:
        pa = _arrow()
        vectors = self.embedder(images).numpy()
        return {"embedding": pa.FixedSizeListArray.from_arrays(vectors.reshape(-1), self.dim)}


@dataclass(frozen=True)
class TaskSpec:
    """A task (`name`: predict or embed, with its `options`: PredictTask's topk, EmbedTask's layer and normalize)
    on `model` as `load_for_inference` takes it; `build` loads the model and makes the task on a device."""

    name: str
    model: str | Path | VGG | LoadedModel
    pretrained: str | Path | None = None
    precision: str = "auto"
    options: dict = field(default_factory=dict)

    def build(self, device: str) -> PredictTask | EmbedTask:
        loaded = load_for_inference(self.model, self.pretrained, device, self.precision)
        return (PredictTask if self.name == "predict" else EmbedTask)(loaded, **self.options)
