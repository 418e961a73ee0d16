"""The inference paths timed side by side on the same weights, and their agreement with vggnet's fp32 path.

The baseline is torchvision's model, eager, fp32 (what most users run); against it: vggnet's fp32 and default
paths, optionally torch.compile, int8 (PT2E) and the peer runtimes (ONNX Runtime, OpenVINO). The rounds are
interleaved (each round times every path once), so that a change in the machine's speed during the run affects all
paths alike; the median of the rounds is reported. Agreement with fp32 (top-1, largest logit difference) is measured
on real images, where top-1 means something only with trained weights.
"""

import copy
import logging
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..data import ImageListDataset, Preprocess, collate_skipping_failures, digits_folder, discover_splits
from ..data.folders import list_images
from ..extras import MissingExtra, require
from ..infer.runner import InferenceRunner
from ..infer.source import LoadedModel
from ..models.vgg import VGG
from .ceiling import CeilingSamples
from .timing import BenchmarkPath, timed_call, use_allocator_of

logger = logging.getLogger("vggnet")

BASELINE = "torchvision eager fp32"
INT8_PATH = "vggnet int8 (PT2E) + torch.compile"
OPENVINO_PATH = "openvino (default)"
ORT_CUDA_PATH = "onnxruntime fp32 (CUDA provider)"
# The baseline for a layout torchvision has no model of (the compact head, other widths or input channels).
PLAIN_BASELINE = "eager fp32 (plain module)"


@dataclass
class PathResult:
    """One path's timed rounds at one batch size, and its agreement with vggnet's fp32 path."""

    name: str
    batch_size: int
    precision: str
    latencies: list[float] = field(default_factory=list)
    agreement: float | None = None
    max_logit_diff: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p90(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.median


def time_paths(
    paths: dict, batch_size: int, img_size: int, rounds: int, images, device, ceiling: CeilingSamples, agreement: bool
) -> list[PathResult]:
    """Interleaved rounds at one batch size, each followed by a sample of the ceiling, then each path's largest
    logit difference from vggnet's fp32 path on real images and, with `agreement` (trained weights), the fraction
    of them on which its top-1 class is fp32's."""
    inputs = torch.randn(batch_size, 3, img_size, img_size)
    by_path = {label: PathResult(label, batch_size, path.precision) for label, path in paths.items()}
    for path in paths.values():  # warm-up (and compilation)
        use_allocator_of(path)
        path.run(inputs)
    for _ in range(rounds):
        for label, path in paths.items():
            by_path[label].latencies.append(timed_call(path, device, inputs))
        ceiling.sample()
    reference = paths["vggnet fp32"].run(images)
    for label, path in paths.items():
        logits = path.run(images)
        if agreement:
            by_path[label].agreement = float((logits.argmax(1) == reference.argmax(1)).float().mean())
        by_path[label].max_logit_diff = float((logits - reference).abs().max())
    return list(by_path.values())


def build_paths(
    network, name, preprocess, device, fast_precision, img_size, peers, compile, int8, images, keep
) -> tuple[str, dict]:
    """(the baseline's label, label -> BenchmarkPath)."""
    baseline, reference = _baseline(network, name)
    reference = reference.to(device)

    def eager(images):
        with torch.no_grad():
            return reference(images.to(device)).float().cpu()

    def runner(precision, compiled=False):
        loaded = LoadedModel(network, [], preprocess, device, precision, name)
        run = InferenceRunner(loaded, compile=compiled)
        return lambda images: run(images).cpu()

    paths = {
        baseline: BenchmarkPath(eager, "fp32"),
        "vggnet fp32": BenchmarkPath(runner("fp32"), "fp32", keep),
        f"vggnet default ({fast_precision})": BenchmarkPath(runner(fast_precision), fast_precision, keep),
    }
    if compile:
        paths[f"vggnet {fast_precision} + torch.compile"] = BenchmarkPath(
            runner(fast_precision, True), fast_precision, keep
        )
    if int8:
        from ..models.int8 import int8_module, observer_state, prepare_for_calibration

        prepared = prepare_for_calibration(network, img_size)
        with torch.no_grad():
            for batch in images.split(16):  # calibrated on the real images
                prepared(batch)
        module = int8_module(network, observer_state(prepared, network), img_size)
        quantized = LoadedModel(module, [], preprocess, device, "int8", name)
        paths[INT8_PATH] = BenchmarkPath(InferenceRunner(quantized), "int8", keep)
    if peers:
        paths.update(_peer_paths(network, img_size, device))
    return baseline, paths


def _baseline(network: VGG, name: str) -> tuple[str, torch.nn.Module]:
    """(label, module) of the baseline: torchvision's model of the same name with the same weights, what most
    users run; for a layout torchvision has no model of, the same network as a plain module (eager, fp32,
    contiguous memory)."""
    kwargs = network.model_kwargs
    if kwargs["head"] == "classic" and kwargs["in_chans"] == 3 and kwargs["width_mult"] == 1.0:
        import torchvision

        reference = getattr(torchvision.models, name)(num_classes=network.num_classes).eval()
        reference.load_state_dict(network.state_dict())
        return BASELINE, reference
    return PLAIN_BASELINE, copy.deepcopy(network).eval().to(memory_format=torch.contiguous_format)


def _peer_paths(network, img_size, device: torch.device) -> dict:
    """The peer runtimes on the same weights, where installed: ONNX Runtime and OpenVINO on the CPU, ONNX Runtime's
    CUDA provider on a GPU. Each takes and returns arrays on the CPU, as the other paths' batches and logits are."""
    onnxruntime = _optional_peer("onnxruntime", "the ONNX Runtime peer")
    if onnxruntime is None:
        return {}
    if device.type == "cuda" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        logger.warning(
            "--peers: skipping ONNX Runtime: its CUDA provider is not in this installation (providers: %s); "
            "pip install onnxruntime-gpu for the package built for your CUDA",
            ", ".join(onnxruntime.get_available_providers()),
        )
        return {}
    from ..infer.export import export

    folder = Path(tempfile.mkdtemp(prefix="vggnet-benchmark-"))
    onnx_path = export(network, "onnx", out=folder / "model.onnx", img_size=img_size, dynamic_batch=True).path
    if device.type == "cuda":
        provider = ("CUDAExecutionProvider", {"device_id": device.index or 0})
        session = onnxruntime.InferenceSession(str(onnx_path), providers=[provider])
        return {ORT_CUDA_PATH: BenchmarkPath(_onnxruntime_run(session), "fp32")}
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    paths = {"onnxruntime fp32": BenchmarkPath(_onnxruntime_run(session), "fp32")}
    openvino = _optional_peer("openvino", "the OpenVINO peer")
    if openvino is not None:
        compiled = openvino.Core().compile_model(str(onnx_path), "CPU")
        paths[OPENVINO_PATH] = BenchmarkPath(
            lambda images: torch.from_numpy(compiled(images.numpy())[0].copy()).float(), "bf16"
        )
    return paths


def _onnxruntime_run(session) -> Callable:
    """A batch on the CPU to its logits on the CPU through an ONNX Runtime session."""
    return lambda images: torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


def _optional_peer(module_name: str, purpose: str):
    """The peer's module, or None with a warning naming the extra that installs it."""
    try:
        return require(module_name, "benchmark", purpose)
    except MissingExtra as missing:
        logger.warning("--peers: skipping %s", missing)
        return None


def real_images(data, preprocess: Preprocess) -> torch.Tensor:
    """Up to 64 real images, preprocessed: from `data`, or the built-in digits' validation set."""
    paths = list_images(Path(data).expanduser()) if data else [p for p, _ in discover_splits(digits_folder()).val]
    step = max(1, len(paths) // 64)
    samples = [(path, 0) for path in paths[::step][:64]]
    dataset = ImageListDataset(samples, preprocess.transform(), preprocess.decode_size)
    images, _, _ = next(iter(DataLoader(dataset, batch_size=len(samples), collate_fn=collate_skipping_failures)))
    return images
