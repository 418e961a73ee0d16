"""`vggnet benchmark`: how fast each way of running VGG is on this machine, measured side by side.

    vggnet benchmark                                  # vgg16, 224x224, batch 1 and 8: speed only
    vggnet benchmark --model vgg16 --pretrained imagenet --batch-size 1,8,32 --peers --compile --int8
    vggnet benchmark --model runs/train/exp/best.pt   # a trained checkpoint, at its own input size

Every path runs the same weights. The rounds are interleaved (each round times every path once), so that a
change in the machine's speed during the run affects all paths alike; the median of the rounds is reported.
Each path's throughput is given as a ratio to the baseline (torchvision's model, eager, fp32: what most users
run) and its achieved GFLOP/s as a fraction of the machine's own compute ceiling at that precision
(`compute_ceiling`), sampled before, between and after the timed rounds: the best sample is the ceiling, and
a spread of the samples above 10% means the machine was busy, which the report says instead of claiming
fractions. Agreement with fp32 (top-1, largest logit difference) is measured on real images (the built-in
digits, or `--data`) with trained weights (`--pretrained`, or a checkpoint as the model); random weights give
nearly tied logits, so with them the report gives speed only. Training throughput compares fp32 with the
default training path. vggnet's paths run with freed memory kept for reuse, as the `vggnet` command sets up
(`allocator`); the baseline and the peers with malloc's default behaviour, switched before each timed call, as
in a process of their own.
"""

import copy
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..allocator import OPT_OUT_VARIABLE, keep_freed_memory, keeping_freed_memory, release_freed_memory
from ..analysis import summarize
from ..data import ImageListDataset, build_transform, collate_skipping_failures, digits_folder, discover_splits
from ..data.folders import list_images
from ..extras import MissingExtra, require
from ..models.factory import create_model
from ..models.registry import resolve_name
from ..models.vgg import VGG
from ..models.weights import IMAGENET_PREPROCESS
from ..runtime import autocast_dtype, default_workers, resolve_device, resolve_precision
from ..tables import render_table
from .runner import InferenceRunner
from .source import LoadedModel, load_for_inference, model_source, require_vgg

logger = logging.getLogger("vggnet")

BASELINE = "torchvision eager fp32"
# The baseline for a layout torchvision has no model of (the compact head, other widths or input channels).
PLAIN_BASELINE = "eager fp32 (plain module)"
RANDOM_WEIGHTS = "random (speed only)"
# A ceiling whose samples differ by more than this (of the best) says the machine was busy during the run.
BUSY_SPREAD = 0.10
# How often each ceiling sample times its kernels (the fastest call counts); samples are taken many times.
SAMPLE_REPEATS = 3
_MATMUL = 2048  # the ceiling's matrix product: _MATMUL^3 multiply-adds
_CONV = (8, 256, 56)  # the ceiling's 3x3 convolution: batch, channels in and out, side of the map


@dataclass
class BenchmarkPath:
    run: Callable  # inference: a float32 batch to float32 logits on the CPU; training: one step
    precision: str
    keeps_freed_memory: bool = False  # vggnet's paths: as its commands set it up; the baseline and peers: never


@dataclass
class PathResult:
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


class CeilingSamples:
    """The compute ceiling of each precision, measured again and again while the benchmark runs (`sample`).

    The best sample is the ceiling (the machine's best, not its average); the spread, (best - worst) / best,
    says how much the machine's speed moved while the paths were timed: other work on the machine shows there.

    Args:
        dtypes: precision label -> the dtype its ceiling is measured in.
        device: Where the kernels run.
    """

    def __init__(self, dtypes: dict[str, torch.dtype], device: torch.device) -> None:
        self.dtypes = dtypes
        self.device = device
        self.samples = {label: [] for label in dtypes}

    def sample(self) -> None:
        for label, dtype in self.dtypes.items():
            self.samples[label].append(compute_ceiling(dtype, self.device, SAMPLE_REPEATS))

    @property
    def best(self) -> dict[str, float]:
        return {label: max(samples) for label, samples in self.samples.items()}

    @property
    def spread(self) -> dict[str, float]:
        return {label: 1 - min(samples) / max(samples) for label, samples in self.samples.items()}

    @property
    def busy(self) -> bool:
        return max(self.spread.values()) > BUSY_SPREAD


def compute_ceiling(dtype: torch.dtype, device: torch.device, repeats: int = 10) -> float:
    """GFLOP/s this machine reaches in `dtype` on the dense work that VGG is made of: the larger of a 2048^3
    matrix product and a 256-channel 3x3 convolution on a 56x56 map (batch 8, channels_last).

    For int8 (GOP/s), the same two shapes run through the kernels that the int8 path's compiled graph calls (as
    torch.profiler shows): oneDNN's quantized linear and convolution, uint8 activations times int8 weights
    prepacked per channel, requantized to uint8 (with the ReLU fused, for the convolution). A plain int8 matrix
    product (`torch._int_mm`), the kernel measured before, is not what the path runs, and the path outran it.
    """
    with torch.no_grad():
        kernels = _int8_kernels() if dtype == torch.int8 else _float_kernels(dtype, device)
        return max(_rate(work, operations, device, repeats) for work, operations in kernels)


def _float_kernels(dtype: torch.dtype, device: torch.device) -> list[tuple[Callable, int]]:
    batch, channels, side = _CONV
    a = torch.randn(_MATMUL, _MATMUL, device=device).to(dtype)
    b = torch.randn(_MATMUL, _MATMUL, device=device).to(dtype)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).eval().to(device=device, dtype=dtype)
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, side, side, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    return [(lambda: a @ b, 2 * _MATMUL**3), (lambda: conv(x), 2 * channels * channels * 9 * side * side * batch)]


def _int8_kernels() -> list[tuple[Callable, int]]:
    """oneDNN's int8 linear and 3x3 convolution (CPU), called as inductor's int8 graph calls them."""
    onednn = torch.ops.onednn
    x_scale, x_zero_point, out_scale = 0.02, 128, 0.05  # any valid quantization; the speed does not depend on it
    batch, channels, side = _CONV
    x = torch.randint(0, 256, (batch, channels, side, side), dtype=torch.uint8)
    x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randint(-127, 128, (channels, channels, 3, 3), dtype=torch.int8)
    w_scales, w_zero_points = torch.full((channels,), 0.01), torch.zeros(channels, dtype=torch.int64)
    conv_args = ([1, 1], [1, 1], [1, 1], 1)  # stride, padding, dilation, groups
    packed = onednn.qconv_prepack(w, w_scales, x_scale, x_zero_point, *conv_args, list(x.shape))

    def conv():
        return onednn.qconv_pointwise(
            x, x_scale, x_zero_point, packed, w_scales, w_zero_points, None, *conv_args, out_scale, 0, torch.uint8,
            "relu", [], "",
        )  # fmt: skip

    a = torch.randint(0, 256, (_MATMUL, _MATMUL), dtype=torch.uint8)
    b = torch.randint(-127, 128, (_MATMUL, _MATMUL), dtype=torch.int8)
    b_scales, b_zero_points = torch.full((_MATMUL,), 0.01), torch.zeros(_MATMUL, dtype=torch.int64)
    packed_b = onednn.qlinear_prepack(b, list(a.shape))

    def matmul():
        return onednn.qlinear_pointwise(
            a, x_scale, x_zero_point, packed_b, b_scales, b_zero_points, None, out_scale, 0, torch.uint8, "none", [],
            "",
        )  # fmt: skip

    return [(matmul, 2 * _MATMUL**3), (conv, 2 * channels * channels * 9 * side * side * batch)]


def _rate(work, flops: int, device: torch.device, repeats: int) -> float:
    """GFLOP/s of the fastest of `repeats` timed calls (a ceiling: the machine's best, not its average)."""
    for _ in range(2):
        work()
    fastest = float("inf")
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        work()
        _sync(device)
        fastest = min(fastest, time.perf_counter() - started)
    return flops / fastest / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark(
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
        peers: Also ONNX Runtime and OpenVINO, where installed (CPU).
        compile: Also the torch.compile path.
        data: A folder of real images for the agreement check (default: the built-in digits).
        training: Also training throughput and the data pipeline's rate.
        device: `auto`, `cpu` or `cuda`.
        int8: Also the int8 path (CPU, torchao).
        pretrained: `"imagenet"` or a weights file, with a registry name.

    Returns:
        The report: `weights` names the weights used (`"random (speed only)"`: no top-1 agreement, it is None);
        `ceilings_gflops` the best sample of each ceiling, `ceiling_spread` their spread, `machine_busy` whether
        a spread exceeded 10%, and `warnings` what the text report warns of. Fractions of the ceiling are the
        measured ones, over 1 included; `render_benchmark` shows them only where they mean something.
    """
    torch_device = resolve_device(device)
    if torch_device.type != "cpu" and (peers or int8):
        raise ValueError(
            f"--peers and --int8 measure CPU runtimes, not {torch_device.type}; leave them out, or use --device cpu"
        )
    network, weights, preprocess = _weights(model, pretrained)
    name = resolve_name(network.model_name)
    img_size = img_size or preprocess["img_size"]
    # The weights' own preprocessing, its resize scaled with the crop when timed at another size.
    resize = round(img_size * preprocess["resize"] / preprocess["img_size"])
    preprocess = {**preprocess, "img_size": img_size, "resize": resize}
    fast_precision = resolve_precision(precision, torch_device)
    macs = summarize(name, img_size, **network.model_kwargs).total_macs
    dtypes = {"fp32": torch.float32}
    if fast_precision != "fp32":
        dtypes[fast_precision] = autocast_dtype(fast_precision)
    if int8:
        dtypes["int8"] = torch.int8
    ceiling = CeilingSamples(dtypes, torch_device)
    ceiling.sample()  # before the first timed round; each round adds one
    images = _real_images(data, preprocess)
    kept_at_start = keeping_freed_memory()  # the `vggnet` command's setting: vggnet's paths run with it
    try:
        # Training first: with ONNX Runtime's and OpenVINO's sessions alive, PyTorch's training steps ran up to
        # 1.5x slower on a 2-core CPU (the inference rounds were not affected).
        if training:
            training_rows = _training_throughput(name, torch_device, fast_precision, img_size, ceiling, kept_at_start)
        baseline, paths = _build_paths(network, name, preprocess, torch_device, fast_precision, img_size, peers,
                                       compile, int8, images, kept_at_start)  # fmt: skip
        results = []
        for batch_size in batch_sizes:
            results.extend(_time_paths(paths, batch_size, img_size, rounds, images, torch_device, ceiling,
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
        "ceilings_gflops": ceiling.best,
        "ceiling_spread": ceiling.spread,
        "ceiling_samples": len(ceiling.samples["fp32"]),
        "machine_busy": ceiling.busy,
        "agreement_images": len(images),
        "agreement_data": str(data) if data else "the built-in digits",
        "vggnet_keeps_freed_memory": kept_at_start,
        "inference": [_row(result, results, baseline, macs, ceiling.best) for result in results],
    }
    if training:
        report["training"] = _training_fractions(training_rows, ("fp32", fast_precision), ceiling.best)
    report["warnings"] = _warnings(report)
    return report


def _weights(model: str | Path, pretrained: str | Path | None) -> tuple[VGG, str, dict]:
    """(network on the CPU in eval mode, the weights' name for the report, their preprocessing)."""
    if pretrained is None and isinstance(model_source(model), str):
        torch.manual_seed(0)  # the same random weights in every run
        return create_model(model).eval(), RANDOM_WEIGHTS, dict(IMAGENET_PREPROCESS)
    loaded = load_for_inference(model, pretrained, device="cpu", precision="fp32")
    weights = str(pretrained) if pretrained is not None else loaded.source
    return require_vgg(loaded, "benchmark"), weights, loaded.preprocess


def _use_allocator_of(path: BenchmarkPath) -> None:
    """vggnet's paths run with freed memory kept for reuse where its command set that up; the baseline and the
    peers with the C allocator's default behaviour, as in a process of their own."""
    (keep_freed_memory if path.keeps_freed_memory else release_freed_memory)()


def _timed_call(path: BenchmarkPath, device: torch.device, *args) -> float:
    """Seconds of one call of `path` (with its allocator setting), the device synchronised around it."""
    _use_allocator_of(path)
    _sync(device)
    started = time.perf_counter()
    path.run(*args)
    _sync(device)
    return time.perf_counter() - started


def _time_paths(
    paths: dict, batch_size: int, img_size: int, rounds: int, images, device, ceiling: CeilingSamples, agreement: bool
) -> list[PathResult]:
    """Interleaved rounds at one batch size, each followed by a sample of the ceiling, then each path's largest
    logit difference from vggnet's fp32 path on real images and, with `agreement` (trained weights), the fraction
    of them on which its top-1 class is fp32's."""
    inputs = torch.randn(batch_size, 3, img_size, img_size)
    by_path = {label: PathResult(label, batch_size, path.precision) for label, path in paths.items()}
    for path in paths.values():  # warm-up (and compilation)
        _use_allocator_of(path)
        path.run(inputs)
    for _ in range(rounds):
        for label, path in paths.items():
            by_path[label].latencies.append(_timed_call(path, device, inputs))
        ceiling.sample()
    reference = paths["vggnet fp32"].run(images)
    for label, path in paths.items():
        logits = path.run(images)
        if agreement:
            by_path[label].agreement = float((logits.argmax(1) == reference.argmax(1)).float().mean())
        by_path[label].max_logit_diff = float((logits - reference).abs().max())
    return list(by_path.values())


def _build_paths(
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
        paths["vggnet int8 (PT2E) + torch.compile"] = BenchmarkPath(InferenceRunner(quantized), "int8", keep)
    if peers:
        paths.update(_peer_paths(network, img_size))
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


def _peer_paths(network, img_size) -> dict:
    """ONNX Runtime and OpenVINO on the same weights, where installed."""
    paths = {}
    onnxruntime = _optional_peer("onnxruntime", "the ONNX Runtime peer")
    folder = Path(tempfile.mkdtemp(prefix="vggnet-benchmark-"))
    if onnxruntime is not None:
        from .export import export

        onnx_path = export(network, "onnx", out=folder / "model.onnx", img_size=img_size, dynamic_batch=True).path
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        paths["onnxruntime fp32"] = BenchmarkPath(
            lambda images: torch.from_numpy(session.run(None, {"images": images.numpy()})[0]), "fp32"
        )
        openvino = _optional_peer("openvino", "the OpenVINO peer")
        if openvino is not None:
            compiled = openvino.Core().compile_model(str(onnx_path), "CPU")
            paths["openvino (default)"] = BenchmarkPath(
                lambda images: torch.from_numpy(compiled(images.numpy())[0].copy()).float(), "bf16"
            )
    return paths


def _optional_peer(module_name: str, purpose: str):
    """The peer's module, or None with a warning naming the extra that installs it."""
    try:
        return require(module_name, "benchmark", purpose)
    except MissingExtra as missing:
        logger.warning("--peers: skipping %s", missing)
        return None


def _real_images(data, preprocess) -> torch.Tensor:
    """Up to 64 real images, preprocessed: from `data`, or the built-in digits' validation set."""
    paths = list_images(Path(data).expanduser()) if data else [p for p, _ in discover_splits(digits_folder()).val]
    step = max(1, len(paths) // 64)
    samples = [(path, 0) for path in paths[::step][:64]]
    dataset = ImageListDataset(samples, build_transform(preprocess))
    images, _, _ = next(iter(DataLoader(dataset, batch_size=len(samples), collate_fn=collate_skipping_failures)))
    return images


def _row(result: PathResult, results: list[PathResult], baseline: str, macs: int, ceilings: dict) -> dict:
    reference = next(r for r in results if r.name == baseline and r.batch_size == result.batch_size)
    gflops = 2 * macs * result.images_per_s / 1e9
    ceiling = ceilings.get(result.precision, ceilings["fp32"])
    return {
        "path": result.name,
        "batch_size": result.batch_size,
        "images_per_s": result.images_per_s,
        "ratio_to_baseline": result.images_per_s / reference.images_per_s,
        "latency_p50_ms": result.median * 1000,
        "latency_p90_ms": result.p90 * 1000,
        "gflops": gflops,
        "fraction_of_ceiling": gflops / ceiling,
        "top1_agreement_vs_fp32": result.agreement,
        "max_logit_diff_vs_fp32": result.max_logit_diff,
    }


def _training_throughput(
    name, device, fast_precision, img_size, ceiling: CeilingSamples, keep: bool, rounds: int = 4
) -> list:
    """Forward + backward + optimizer steps per second, in interleaved rounds: eager fp32 (as most users train)
    against vggnet's default path (channels_last, autocast at the fast precision, a fused optimizer, freed memory
    kept), for the full model at `img_size` (batch 8) and a compact one at 32x32 (batch 128). A training step
    counts as three forward passes of work (the backward pass computes gradients of inputs and of weights). Each
    timed round is followed by a sample of the ceiling; the fractions of it are worked out once the last sample is
    in (`_training_fractions`). Each row also gives the rate of the data pipeline alone at its input size, to
    compare with the training rates."""
    rows = []
    for head, size, batch in (("classic", img_size, 8), ("compact", 32, 128)):
        images, labels = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
        paths = {
            "fp32": BenchmarkPath(_training_step(name, head, device, "fp32", images, labels), "fp32"),
            f"default ({fast_precision})": BenchmarkPath(
                _training_step(name, head, device, fast_precision, images, labels), fast_precision, keep
            ),
        }
        durations = {label: [] for label in paths}
        for round in range(rounds + 1):  # the first round warms up
            seconds = {label: _timed_call(path, device) for label, path in paths.items()}
            if round:
                for label, duration in seconds.items():
                    durations[label].append(duration)
                ceiling.sample()
        timings = {label: batch / statistics.median(times) for label, times in durations.items()}
        fp32, default = timings.values()
        flops_per_image = 3 * 2 * summarize(name, size, num_classes=10, head=head).total_macs
        rows.append(
            {
                "model": f"{name} ({head}, {size}x{size})",
                "batch_size": batch,
                "images_per_s": timings,
                "ratio": default / fp32,
                "gflops": {label: flops_per_image * rate / 1e9 for label, rate in timings.items()},
                "data_pipeline_images_per_s": _data_pipeline_rate(size),
            }
        )
    return rows


def _training_fractions(rows: list[dict], precisions: tuple[str, str], ceilings: dict) -> list[dict]:
    """The training rows with each path's fraction of its precision's ceiling (fp32, then the default path)."""
    for row in rows:
        row["fraction_of_ceiling"] = {
            label: gflops / ceilings[precision]
            for (label, gflops), precision in zip(row["gflops"].items(), precisions, strict=True)
        }
    return rows


def _training_step(name, head, device, precision, images, labels) -> Callable[[], None]:
    """One SGD step of a fresh model: eager fp32 for "fp32", else as vggnet's trainer runs it."""
    torch.manual_seed(0)
    vggnet = precision != "fp32"
    memory_format = torch.channels_last if vggnet else torch.contiguous_format
    model = create_model(name, num_classes=10, head=head).to(device=device, memory_format=memory_format).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=vggnet or None)
    images = images.to(device=device, memory_format=memory_format)
    labels = labels.to(device)
    dtype = autocast_dtype(precision)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _data_pipeline_rate(img_size: int) -> float:
    """Images per second of decoding and training augmentation alone, to `img_size` (the digits, with the default
    loader workers)."""
    samples = discover_splits(digits_folder()).train[:512]
    preprocess = {**IMAGENET_PREPROCESS, "img_size": img_size, "resize": img_size}
    dataset = ImageListDataset(samples, build_transform(preprocess, train=True))
    loader = DataLoader(dataset, batch_size=64, num_workers=default_workers(), collate_fn=collate_skipping_failures)
    started = time.perf_counter()
    count = sum(len(labels) for _, labels, _ in loader)
    return count / (time.perf_counter() - started)


def _warnings(report: dict) -> list[str]:
    """What the figures of `report` cannot be trusted for, one sentence each."""
    warnings = []
    if report["machine_busy"]:
        label, spread = max(report["ceiling_spread"].items(), key=lambda item: item[1])
        best = report["ceilings_gflops"][label]
        warnings.append(
            f"machine busy: the {label} compute ceiling moved by {spread:.0%} during the run "
            f"({best * (1 - spread):,.0f} to {best:,.0f} GFLOP/s; more than {BUSY_SPREAD:.0%}): other work shared "
            "the machine, so throughputs and ratios are not this machine's, and fractions of the ceiling are left "
            "out; rerun on a quiet machine"
        )
        return warnings
    fractions = [row["fraction_of_ceiling"] for row in report["inference"]]
    fractions += [value for row in report.get("training", []) for value in row["fraction_of_ceiling"].values()]
    if any(fraction > 1 for fraction in fractions):
        warnings.append(
            "'>100%!': faster than the ceiling measured in this run, whose kernels suit that path's work less well "
            "than the path itself does; its fraction of the ceiling says nothing"
        )
    return warnings


def _fraction_cell(fraction: float, busy: bool) -> str:
    """A fraction of the ceiling as the text shows it: left out when the machine was busy, and never a figure
    over 100%, which says only that the ceiling was measured too low."""
    if busy:
        return "busy"
    return ">100%!" if fraction > 1 else f"{fraction:.0%}"


def render_benchmark(report: dict) -> str:
    """The report as text tables, warnings first."""
    busy = report["machine_busy"]
    ceilings = ", ".join(
        f"{label} {gflops:,.0f} GFLOP/s (spread {report['ceiling_spread'][label]:.0%})"
        for label, gflops in report["ceilings_gflops"].items()
    )
    trained = report["weights"] != RANDOM_WEIGHTS
    lines = [
        *(f"WARNING {warning}" for warning in report["warnings"]),
        f"{report['model']} at {report['img_size']}x{report['img_size']} ({report['gmacs_per_image']:.2f} GMACs per "
        f"image), {report['device']}, {report['threads']} threads, torch {report['torch']}",
        f"weights: {report['weights']}"
        + ("" if trained else ": top-1 agreement left out (random weights give nearly tied logits, whose order "
           "rounding flips); pass --pretrained imagenet, or a checkpoint as --model, to measure it"),
        f"compute ceiling, best of {report['ceiling_samples']} samples taken before, between and after the timed "
        f"rounds (a 2048^3 matmul and a 256-channel 3x3 convolution"
        + ("; int8: oneDNN's int8 kernels, which the int8 path runs" if "int8" in report["ceilings_gflops"] else "")
        + f"): {ceilings}",
        "vggnet's paths keep freed memory for reuse; the baseline and peers run with malloc's default behaviour"
        if report["vggnet_keeps_freed_memory"]
        else f"all paths run with malloc's default behaviour ({OPT_OUT_VARIABLE}=0, or not glibc)",
        "",
    ]  # fmt: skip
    rows = [
        [
            r["path"], r["batch_size"], f"{r['images_per_s']:.1f}", f"{r['ratio_to_baseline']:.2f}x",
            f"{r['latency_p50_ms']:.1f}", f"{r['latency_p90_ms']:.1f}", f"{r['gflops']:.0f}",
            _fraction_cell(r["fraction_of_ceiling"], busy),
            *([f"{r['top1_agreement_vs_fp32']:.1%}"] if trained else []), f"{r['max_logit_diff_vs_fp32']:.2g}",
        ]
        for r in report["inference"]
    ]  # fmt: skip
    headers = ["path", "batch", "images/s", "vs baseline", "p50 ms", "p90 ms", "GFLOP/s", "of ceiling",
               *(["top-1 agree"] if trained else []), "max logit diff"]  # fmt: skip
    lines.append(render_table(headers, rows))
    measured = "agreement" if trained else "largest logit difference"
    lines.append(
        f"({measured} on {report['agreement_images']} real images from {report['agreement_data']}, against vggnet "
        f"fp32; baseline: {report['baseline']})"
    )
    if "training" in report:
        train_rows = []
        for row in report["training"]:
            (fp32_label, fp32), (default_label, default) = row["images_per_s"].items()
            fp32_fraction, default_fraction = row["fraction_of_ceiling"].values()
            train_rows.append(
                [row["model"], row["batch_size"], f"{fp32:.1f}", _fraction_cell(fp32_fraction, busy),
                 f"{default:.1f}", _fraction_cell(default_fraction, busy), f"{row['ratio']:.2f}x",
                 f"{row['data_pipeline_images_per_s']:.0f}"]
            )  # fmt: skip
        workers = f"{default_workers()} loader worker{'s' * (default_workers() != 1)}"
        lines += ["", "training (forward + backward + SGD step), images/s and fraction of the ceiling; the data "
                  f"pipeline alone (decode + augment, {workers}), images/s:"]  # fmt: skip
        headers = ["model", "batch", fp32_label, "of ceiling", default_label, "of ceiling", "ratio", "data pipeline"]
        lines.append(render_table(headers, train_rows))
    return "\n".join(lines)
