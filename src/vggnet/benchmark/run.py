"""`benchmark`: every measurement, in the order that keeps it fair, gathered into one report of plain data.

>>> from vggnet.benchmark import benchmark, render_benchmark
>>> report = benchmark(model="vgg11", batch_sizes=(1,), img_size=32, rounds=1, training=False, device="cpu")
>>> report["baseline"], report["weights"]
('torchvision eager fp32', 'random (speed only)')
"""

from pathlib import Path

import torch

from ..allocator import keep_freed_memory, keeping_freed_memory, release_freed_memory
from ..analysis import summarize
from ..data import Preprocess
from ..infer.source import load_for_inference, model_source, require_vgg
from ..models.factory import create_model
from ..models.registry import resolve_name
from ..models.vgg import VGG
from ..runtime import autocast_dtype, resolve_device, resolve_precision
from .ceiling import CeilingSamples, ceiling_kernels
from .inference import build_paths, real_images, time_paths
from .report import RANDOM_WEIGHTS, inference_row, peer_targets, report_warnings
from .training import training_fractions, training_throughput


def benchmark(
    *,
    model: str | Path = "vgg16",
    batch_sizes: tuple[int, ...] = (1, 8),
    precision: str = "auto",
    img_size: int | None = None,
    rounds: int = 5,
    peers: bool = False,
    compile: bool = False,
    data: str | Path | None = None,
    training: bool = True,
    device: str = "auto",
    int8: bool = False,
    pretrained: str | Path | None = None,
) -> dict:
    """Measure the inference paths (and training throughput) and return the results as plain data.

    Args:
        model: A registry name (random weights unless `pretrained` is given: speed only) or a vggnet checkpoint.
        batch_sizes: The inference batch sizes.
        precision: The fast path's precision (`auto` picks what the hardware runs natively).
        img_size: Input side; None: the weights' own (a checkpoint's crop, 224 for ImageNet or random weights).
        rounds: Timed rounds per path and batch size.
        peers: Also the peer runtimes, where installed: ONNX Runtime and OpenVINO on the CPU, ONNX Runtime's CUDA
            provider on a GPU.
        compile: Also the torch.compile paths (inference, and training with `training`).
        data: A folder of real images for the agreement check (default: the built-in digits).
        training: Also training throughput and the data pipeline's rate.
        device: `auto`, `cpu` or `cuda`.
        int8: Also the int8 path (CPU, torchao).
        pretrained: `"imagenet"` or a weights file, with a registry name.

    Returns:
        The report: `weights` names the weights used (`"random (speed only)"`: no top-1 agreement, it is None);
        `targets` issue 15's targets against the peer (`peer_targets`; empty without one), `ceilings_gflops` the
        best sample of each ceiling, `ceiling_spread` their spread, `machine_busy` whether a spread exceeded
        10%, and `warnings` what the text report warns of. Fractions of the ceiling are the
        measured ones, over 1 included; `render_benchmark` shows them only where they mean something.
    """
    torch_device = resolve_device(device)
    if torch_device.type != "cpu" and int8:
        raise ValueError(f"--int8 measures a CPU runtime, not {torch_device.type}; leave it out, or use --device cpu")
    network, weights, preprocess = _weights(model, pretrained)
    name = resolve_name(network.model_name)
    img_size = img_size or preprocess.img_size
    # The weights' own preprocessing, its resize scaled with the crop when timed at another size.
    preprocess = preprocess.at_img_size(img_size)
    fast_precision = resolve_precision(precision, torch_device)
    macs = summarize(name, img_size, **network.model_kwargs).total_macs
    dtypes = {"fp32": torch.float32}
    if fast_precision != "fp32":
        dtypes[fast_precision] = autocast_dtype(fast_precision)
    if int8:
        dtypes["int8"] = torch.int8
    ceiling = CeilingSamples(dtypes, torch_device)
    ceiling.sample()  # before the first timed round; each round adds one
    images = real_images(data, preprocess)
    kept_at_start = keeping_freed_memory()  # the `vggnet` command's setting: vggnet's paths run with it
    try:
        # Training first: with ONNX Runtime's and OpenVINO's sessions alive, PyTorch's training steps ran up to
        # 1.5x slower on a 2-core CPU (the inference rounds were not affected).
        if training:
            training_rows = training_throughput(
                name, torch_device, fast_precision, img_size, ceiling, kept_at_start, compile=compile
            )
        baseline, paths = build_paths(network, name, preprocess, torch_device, fast_precision, img_size, peers,
                                      compile, int8, images, kept_at_start)  # fmt: skip
        results = []
        for batch_size in batch_sizes:
            results.extend(time_paths(paths, batch_size, img_size, rounds, images, torch_device, ceiling,
                                      agreement=weights != RANDOM_WEIGHTS))  # fmt: skip
    finally:
        (keep_freed_memory if kept_at_start else release_freed_memory)()
    report = {
        "model": name,
        "weights": weights,
        "img_size": img_size,
        "device": str(torch_device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gmacs_per_image": macs / 1e9,
        "baseline": baseline,
        "ceiling_kernels": ceiling_kernels(torch_device),
        "ceilings_gflops": ceiling.best,
        "ceiling_spread": ceiling.spread,
        "ceiling_samples": len(ceiling.samples["fp32"]),
        "machine_busy": ceiling.busy,
        "agreement_images": len(images),
        "agreement_data": str(data) if data else "the built-in digits",
        "vggnet_keeps_freed_memory": kept_at_start,
        "inference": [inference_row(result, results, baseline, macs, ceiling.best) for result in results],
    }
    report["targets"] = peer_targets(report["inference"])
    if training:
        report["training"] = training_fractions(training_rows, ceiling.best)
    report["warnings"] = report_warnings(report)
    return report


def _weights(model: str | Path, pretrained: str | Path | None) -> tuple[VGG, str, Preprocess]:
    """(network on the CPU in eval mode, the weights' name for the report, their preprocessing)."""
    if pretrained is None and isinstance(model_source(model), str):
        torch.manual_seed(0)  # the same random weights in every run
        return create_model(model).eval(), RANDOM_WEIGHTS, Preprocess.imagenet()
    loaded = load_for_inference(model, pretrained, device="cpu", precision="fp32")
    weights = str(pretrained) if pretrained is not None else loaded.source
    return require_vgg(loaded, "benchmark"), weights, loaded.preprocess
