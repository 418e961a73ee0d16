"""Feature vectors for similarity search and clustering.

    vggnet embed --model runs/train/exp/best.pt photos/ --layer relu7 --normalize --out features.npz

The `.npz` holds `features` (N, D) float32, `paths` (N,) and `layer`. A layer with a spatial map (`conv*`,
`relu*_*`, `pool*`) is global-average-pooled to one value per channel.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..choices import INFERENCE_BATCH_SIZE
from ..models.features import extract_features
from ..models.vgg import VGG
from ..outputs import output_file
from .batches import InputBatches
from .runner import InferenceRunner
from .source import LoadedModel, load_for_inference, require_vgg


@dataclass
class Embeddings:
    """One row of `features` per readable input in `paths`; `errors` holds {"path", "error"} for the others.

    >>> import numpy as np
    >>> from vggnet import Embeddings
    >>> embeddings = Embeddings(np.eye(2, 4, dtype=np.float32), ["a.png", "b.png"], "relu7")
    >>> saved = np.load(embeddings.save("features.npz"))
    >>> saved["features"].shape, saved["paths"].tolist(), str(saved["layer"])
    ((2, 4), ['a.png', 'b.png'], 'relu7')
    """

    features: np.ndarray
    paths: list[str]
    layer: str
    errors: list[dict] = field(default_factory=list)

    def save(self, path: str | Path) -> Path:
        path = npz_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, features=self.features, paths=np.array(self.paths), layer=np.array(self.layer))
        return path


def npz_path(out: str | Path) -> Path:
    """`out` checked as the `.npz` file that `Embeddings.save` writes, so that `vggnet embed` can refuse a bad
    `--out` before the inference rather than after it.

    Raises:
        ValueError: `out` does not end in `.npz`, or cannot be written (see `vggnet.outputs.output_file`).
    """
    if Path(out).suffix != ".npz":
        raise ValueError(f"--out {out} must end in .npz")
    return output_file(out, "--out")


def default_layer(model: VGG) -> str:
    """The input of the last layer: `relu7` (4096 values) for the classic head, `flatten` (the pooled
    channels) for the compact one."""
    return "relu7" if model.head == "classic" else "flatten"


class Embedder:
    """Feature vectors of preprocessed batches at one layer (default: `default_layer`), optionally scaled to unit
    L2 norm: what `embed` and the streaming engine run.

    >>> import torch, vggnet
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> embedder = Embedder(vggnet.load_for_inference(model, device="cpu"), layer="pool5")
    >>> embedder.layer, tuple(embedder(torch.zeros(2, 3, 32, 32)).shape)  # pool5 is averaged over its map
    ('pool5', (2, 64))

    Raises:
        ValueError: an int8 model, or a layer the model does not have (the message names the ones it has).
    """

    def __init__(self, loaded: LoadedModel, layer: str | None = None, normalize: bool = False) -> None:
        network = require_vgg(loaded, "embed")
        self.layer = layer or default_layer(network)
        network.get_layer(self.layer)  # raises for a layer this model does not have, naming the ones it has
        self.loaded, self.normalize = loaded, normalize
        self.runner = InferenceRunner(loaded, fold=False)  # conv* layers stay the convolutions' own outputs

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(n, d) float32 vectors on the CPU for a batch of preprocessed images."""
        with torch.no_grad():
            features = extract_features(self.runner.model, self.runner.prepare_input(images), [self.layer])
        features = features[self.layer].float()
        if features.ndim == 4:
            features = features.mean(dim=(2, 3))
        if self.normalize:
            features = torch.nn.functional.normalize(features, dim=1)
        return features.cpu()


def embed(
    model: str | Path | VGG | LoadedModel,
    inputs: list[str | Path],
    *,
    pretrained: str | Path | None = None,
    layer: str | None = None,
    normalize: bool = False,
    batch_size: int = INFERENCE_BATCH_SIZE,
    workers: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    progress: bool = False,
) -> Embeddings:
    """Compute one feature vector per input image at `layer` (default: `default_layer`), optionally scaled to
    unit L2 norm.

    >>> import vggnet
    >>> from PIL import Image
    >>> for colour in ("tomato", "teal"):
    ...     Image.new("RGB", (64, 48), colour).save(f"{colour}.png")
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> embeddings = vggnet.embed(model, ["tomato.png", "teal.png", "gone.png"], normalize=True, device="cpu")
    >>> embeddings.layer, embeddings.features.shape, embeddings.errors  # flatten: the 64 pooled channels
    ('flatten', (2, 64), [{'path': 'gone.png', 'error': 'no such file or folder'}])

    Raises:
        RuntimeError: not one input gave an image (an empty folder, missing or unreadable files); the message
            names the inputs and why.
    """
    embedder = Embedder(load_for_inference(model, pretrained, device, precision), layer, normalize)
    batches = InputBatches(embedder.loaded, inputs, batch_size, workers, progress, "embed")
    rows: dict[int, torch.Tensor] = {}
    for positions, images in batches:
        rows.update(zip(positions, embedder(images), strict=True))
    errors = [{"path": batches.paths[p], "error": reason} for p, reason in sorted(batches.errors.items())]
    if not rows:  # nothing to save: an empty .npz would look like a result
        raise RuntimeError(f"no images were found in {_listing(inputs)}{_reasons(errors)}; nothing was written")
    order = sorted(rows)
    matrix = torch.stack([rows[p] for p in order]).numpy()
    return Embeddings(matrix.astype(np.float32), [batches.paths[p] for p in order], embedder.layer, errors)


def _listing(items: list, shown: int = 3) -> str:
    text = ", ".join(map(str, items[:shown])) or "the inputs (none given)"
    return text + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _reasons(errors: list[dict]) -> str:
    if not errors:
        return ""
    return " (" + _listing([f"{error['path']}: {error['error']}" for error in errors]) + ")"
