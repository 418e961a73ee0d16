"""Export for deployment, checked by running the written file against the PyTorch model.

    vggnet export --model runs/train/exp/best.pt --format onnx [--out PATH] [--dynamic-batch] [--img-size N]
    vggnet export --model runs/train/exp/best.pt --format torchscript
    vggnet export --model runs/train/exp/best.pt --format safetensors

ONNX and TorchScript get an inference copy of the model: BatchNorm folded into the convolutions, and the adaptive
average pool replaced by the fixed pooling it amounts to at the export size (exporters mishandle adaptive pooling
whose output does not divide its input, e.g. the 7x7 pool at 256x256 inputs). safetensors keeps the weights as
they are, with the model, classes and preprocessing in its metadata, so that `vggnet.load_model` rebuilds it.
"""

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write_bytes
from ..choices import EXPORT_FORMATS as FORMATS
from ..extras import require
from ..models.factory import load_model
from ..models.inference_form import fold_batchnorm
from ..models.loading import SAFETENSORS_METADATA_KEY
from ..models.vgg import MIN_INPUT_SIZE, VGG
from .source import LoadedModel, inference_ready, load_for_inference, output_path, require_vgg

SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "safetensors": ".safetensors"}
# The export passes when max |exported - PyTorch| <= TOLERANCE * max(1, max |PyTorch logits|).
TOLERANCE = 1e-4


@dataclass
class ExportResult:
    """What `export` wrote and how closely the written file's outputs matched PyTorch's on sample inputs.

    >>> import vggnet
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> result = vggnet.export(model, "torchscript", out="tiny.torchscript.pt", img_size=32)
    >>> str(result.path), result.format, result.input_size, result.max_abs_diff <= result.tolerance
    ('tiny.torchscript.pt', 'torchscript', 32, True)
    """

    path: Path
    format: str
    input_size: int
    max_abs_diff: float
    tolerance: float


class FixedAdaptiveAvgPool2d(nn.Module):
    """Adaptive average pooling from a fixed `size_in` x `size_in` map to `size_out` x `size_out`, written as two
    matrix products (exact, and exportable whatever the ratio of the sizes)."""

    def __init__(self, size_in: int, size_out: int) -> None:
        super().__init__()
        pooling = torch.zeros(size_out, size_in)
        for i in range(size_out):
            start, end = (i * size_in) // size_out, -((-(i + 1) * size_in) // size_out)
            pooling[i, start:end] = 1.0 / (end - start)
        self.register_buffer("pooling", pooling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooling @ x @ self.pooling.T


def inference_copy(model: VGG, input_size: int) -> VGG:
    """A copy of `model` for inference formats at `input_size`: eval mode, fp32, BatchNorm folded into the
    preceding convolution, and the adaptive pool replaced by its fixed equivalent."""
    copy_ = copy.deepcopy(model).eval().float().to(device="cpu", memory_format=torch.contiguous_format)
    fold_batchnorm(copy_)
    size_in = input_size
    for module in copy_.features:
        if isinstance(module, nn.MaxPool2d):
            size_in //= 2
    size_out = copy_.avgpool.output_size
    size_out = size_out[0] if isinstance(size_out, tuple) else size_out
    if size_in == size_out:
        copy_.avgpool = nn.Identity()
    elif size_in % size_out == 0:
        copy_.avgpool = nn.AvgPool2d(size_in // size_out)
    else:
        copy_.avgpool = FixedAdaptiveAvgPool2d(size_in, size_out)
    return copy_


def export(
    model: str | Path | VGG | LoadedModel,
    format: str,
    *,
    out: str | Path | None = None,
    pretrained: str | Path | None = None,
    img_size: int | None = None,
    dynamic_batch: bool = False,
) -> ExportResult:
    """Write the model in `format` and check the file by running it on sample inputs against PyTorch.

    >>> import torch, vggnet
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> path = vggnet.export(model, "torchscript", out="tiny.torchscript.pt", img_size=32).path
    >>> torch.jit.load(path)(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 3])
    >>> vggnet.export("runs/train/exp/best.pt", "onnx", dynamic_batch=True)  # doctest: +SKIP

    Args:
        model: A checkpoint path, or a registry name with `pretrained`.
        format: `onnx`, `torchscript` or `safetensors`.
        out: Output path (default: beside the checkpoint, or `runs/export/<model>` for a registry model); an
            existing file at the default path is not overwritten, and is reported before the model loads.
        img_size: Square input side (default: the weights' preprocessing).
        dynamic_batch: Let the batch dimension vary (ONNX; TorchScript traces accept any batch anyway).

    Raises:
        RuntimeError: the exported file's outputs differ from PyTorch's beyond tolerance.
        MissingExtra: ONNX export without the `export` extra installed.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown --format {format!r}; choose one of: {', '.join(FORMATS)}")
    # What can fail without the model is checked before loading it (seconds, for a large checkpoint).
    path = output_path(out, model, SUFFIXES[format], "export")
    if format == "onnx":
        _onnx_runtime()
    loaded = load_for_inference(model, pretrained, device="cpu")
    network = inference_ready(require_vgg(loaded, "export"), torch.device("cpu"))
    size = img_size or loaded.preprocess.img_size
    if size < MIN_INPUT_SIZE:
        raise ValueError(f"--img-size {size} is too small for VGG; use at least {MIN_INPUT_SIZE}")
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = torch.randn(2, network.in_chans, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = network(samples)
    if format == "safetensors":
        exported = _export_safetensors(network, loaded, path)(samples)
    else:
        runner = {"onnx": _export_onnx, "torchscript": _export_torchscript}[format]
        exported = runner(inference_copy(network, size), samples[:1], path, dynamic_batch)(samples)
    difference = float((exported - expected).abs().max())
    tolerance = TOLERANCE * max(1.0, float(expected.abs().max()))
    if not difference <= tolerance:
        raise RuntimeError(
            f"the exported {format} model at {path} differs from PyTorch by {difference:.3g} (tolerance "
            f"{tolerance:.3g}); the file is kept for inspection"
        )
    return ExportResult(path, format, size, difference, tolerance)


def _onnx_runtime():
    """onnxruntime, which checks the exported file, after making sure of onnx and onnxscript, which
    `torch.onnx.export` imports to write it."""
    for package in ("onnx", "onnxscript"):
        require(package, "export", "ONNX export")
    return require("onnxruntime", "export", "ONNX export")


def _export_onnx(model: VGG, example: torch.Tensor, path: Path, dynamic_batch: bool):
    onnxruntime = _onnx_runtime()

    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["images"],
            output_names=["logits"],
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            verbose=False,
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(samples: torch.Tensor) -> torch.Tensor:
        batches = [samples] if dynamic_batch else list(samples.split(1))
        outputs = [session.run(None, {"images": batch.numpy()})[0] for batch in batches]
        return torch.from_numpy(np.concatenate(outputs))

    return run


def _export_torchscript(model: VGG, example: torch.Tensor, path: Path, dynamic_batch: bool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing warns that the input checks become constants: intended
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path))

    def run(samples: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return loaded(samples)

    return run


def _export_safetensors(model: VGG, loaded: LoadedModel, path: Path):
    from safetensors.torch import save

    metadata = {
        "model": {"name": model.model_name, "kwargs": model.model_kwargs},
        "classes": loaded.classes,
        "preprocess": loaded.preprocess.to_dict(),
    }
    state_dict = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    # Written here rather than by safetensors' `save_file`, whose temporary file (renamed into place) makes the
    # export readable by its owner only, whatever the umask: this one gets the same permissions as every output.
    atomic_write_bytes(path, save(state_dict, metadata={SAFETENSORS_METADATA_KEY: json.dumps(metadata)}))
    fresh = load_model(path).eval()

    def run(samples: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return fresh(samples)

    return run
