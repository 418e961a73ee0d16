"""`vggnet benchmark`: how fast each way of running VGG is on this machine, measured side by side.

    vggnet benchmark                                  # vgg16, 224x224, batch 1 and 8
    vggnet benchmark --model vgg16 --batch-size 1,8,32 --peers --compile

Every path runs the same weights. The rounds are interleaved (each round times every path once), so that a
change in the machine's speed during the run affects all paths alike; the median of the rounds is reported.
Each path's throughput is given as a ratio to the baseline (torchvision's model, eager, fp32: what most users
run) and its achieved GFLOP/s as a fraction of the machine's own compute ceiling at that precision, measured
first (`compute_ceiling`). Agreement with fp32 (top-1, largest logit difference) is measured on real images:
the built-in digits, or `--data`. Training throughput compares fp32 with the default training path. vggnet's
paths run with freed memory kept for reuse, as the `vggnet` command sets up (`allocator`); the baseline and the
peers with malloc's default behaviour, switched before each timed call, as in a process of their own.
"""

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader

from ..allocator import OPT_OUT_VARIABLE, keep_freed_memory, keeping_freed_memory, release_freed_memory
from ..analysis import summarize
from ..data import ImageListDataset, build_transform, collate_skipping_failures, digits_folder, discover_splits
from ..data.folders import list_images
from ..models.factory import create_model
from ..models.registry import resolve_name
from ..models.weights import IMAGENET_PREPROCESS
from ..runtime import autocast_dtype, default_workers, resolve_device, resolve_precision
from ..tables import render_table
from .runner import InferenceRunner
from .source import LoadedModel

BASELINE = "torchvision eager fp32"


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


def compute_ceiling(dtype: torch.dtype, device: torch.device, repeats: int = 10) -> float:
    """GFLOP/s this machine reaches in `dtype` on the best-suited dense work: the larger of a 2048^3 matrix
    product and a 256-channel 3x3 convolution on a 56x56 map (batch 8, channels_last), the bulk of VGG's work.
    For int8: a 2048^3 int8 matrix product (GOP/s)."""
    if dtype == torch.int8:
        a = torch.randint(-128, 127, (2048, 2048), dtype=torch.int8, device=device)
        return _rate(lambda: torch._int_mm(a, a), 2 * 2048**3, device, repeats)
    a = torch.randn(2048, 2048, device=device).to(dtype)
    b = torch.randn(2048, 2048, device=device).to(dtype)
    matmul = _rate(lambda: a @ b, 2 * 2048**3, device, repeats)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).eval().to(device=device, dtype=dtype)
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(8, 256, 56, 56, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        convolution = _rate(lambda: conv(x), 2 * 256 * 256 * 9 * 56 * 56 * 8, device, repeats)
    return max(matmul, convolution)


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
    model: str = "vgg16",
    batch_sizes: tuple[int, ...] = (1, 8),
    precision: str = "auto",
    img_size: int = 224,
    rounds: int = 5,
    peers: bool = False,
    compile: bool = False,
    data: str | Path | None = None,
    training: bool = True,
    device: str = "auto",
    int8: bool = False,
) -> dict:
    """Measure the inference paths (and training throughput) and return the results as plain data."""
    name = resolve_name(model)
    torch_device = resolve_device(device)
    if torch_device.type != "cpu" and (peers or int8):
        raise ValueError(
            f"--peers and --int8 measure CPU runtimes, not {torch_device.type}; leave them out, or use --device cpu"
        )
    fast_precision = resolve_precision(precision, torch_device)
    torch.manual_seed(0)
    network = create_model(name).eval()
    preprocess = {**IMAGENET_PREPROCESS, "img_size": img_size, "resize": img_size}
    network.pretrained_cfg = {"classes": [str(i) for i in range(network.num_classes)], "preprocess": preprocess}
    macs = summarize(name, img_size).total_macs
    ceilings = {"fp32": compute_ceiling(torch.float32, torch_device)}
    if fast_precision != "fp32":
        ceilings[fast_precision] = compute_ceiling(autocast_dtype(fast_precision), torch_device)
    if int8:
        ceilings["int8"] = compute_ceiling(torch.int8, torch_device)
    images = _real_images(data, preprocess)
    kept_at_start = keeping_freed_memory()  # the `vggnet` command's setting: vggnet's paths run with it
    try:
        # Training first: with ONNX Runtime's and OpenVINO's sessions alive, PyTorch's training steps ran up to
        # 1.5x slower on a 2-core CPU (the inference rounds were not affected).
        if training:
            training_rows = _training_throughput(name, torch_device, fast_precision, img_size, ceilings, kept_at_start)
        paths = _build_paths(network, name, torch_device, fast_precision, img_size, peers, compile, int8, images,
                             kept_at_start)  # fmt: skip
        results = []
        for batch_size in batch_sizes:
            results.extend(_time_paths(paths, batch_size, img_size, rounds, images, torch_device))
    finally:
        (keep_freed_memory if kept_at_start else release_freed_memory)()
    report = {
        "model": name,
        "img_size": img_size,
        "device": str(torch_device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gmacs_per_image": macs / 1e9,
        "ceilings_gflops": ceilings,
        "agreement_images": len(images),
        "vggnet_keeps_freed_memory": kept_at_start,
        "inference": [_row(result, results, macs, ceilings) for result in results],
    }
    if training:
        report["training"] = training_rows
    return report


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


def _time_paths(paths: dict, batch_size: int, img_size: int, rounds: int, images, device) -> list[PathResult]:
    """Interleaved rounds at one batch size, then each path's agreement with vggnet's fp32 path on real images."""
    inputs = torch.randn(batch_size, 3, img_size, img_size)
    by_path = {label: PathResult(label, batch_size, path.precision) for label, path in paths.items()}
    for path in paths.values():  # warm-up (and compilation)
        _use_allocator_of(path)
        path.run(inputs)
    for _ in range(rounds):
        for label, path in paths.items():
            by_path[label].latencies.append(_timed_call(path, device, inputs))
    reference = paths["vggnet fp32"].run(images)
    for label, path in paths.items():
        logits = path.run(images)
        by_path[label].agreement = float((logits.argmax(1) == reference.argmax(1)).float().mean())
        by_path[label].max_logit_diff = float((logits - reference).abs().max())
    return list(by_path.values())


def _build_paths(network, name, device, fast_precision, img_size, peers, compile, int8, images, keep) -> dict:
    """label -> BenchmarkPath."""
    reference = getattr(torchvision.models, name)().eval()
    reference.load_state_dict(network.state_dict())

    def torchvision_eager(images):
        with torch.no_grad():
            return reference.to(device)(images.to(device)).float().cpu()

    def runner(precision, compiled=False):
        loaded = LoadedModel(network, [], network.pretrained_cfg["preprocess"], device, precision, name)
        run = InferenceRunner(loaded, compile=compiled)
        return lambda images: run(images).cpu()

    paths = {
        BASELINE: BenchmarkPath(torchvision_eager, "fp32"),
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
        quantized = LoadedModel(module, [], network.pretrained_cfg["preprocess"], device, "int8", name)
        paths["vggnet int8 (PT2E) + torch.compile"] = BenchmarkPath(InferenceRunner(quantized), "int8", keep)
    if peers:
        paths.update(_peer_paths(network, img_size))
    return paths


def _peer_paths(network, img_size) -> dict:
    """ONNX Runtime and OpenVINO on the same weights, where installed."""
    paths = {}
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    folder = Path(tempfile.mkdtemp(prefix="vggnet-benchmark-"))
    if onnxruntime is not None:
        from .export import export

        onnx_path = export(network, "onnx", out=folder / "model.onnx", img_size=img_size, dynamic_batch=True).path
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        paths["onnxruntime fp32"] = BenchmarkPath(
            lambda images: torch.from_numpy(session.run(None, {"images": images.numpy()})[0]), "fp32"
        )
        try:
            import openvino
        except ImportError:
            openvino = None
        if openvino is not None:
            compiled = openvino.Core().compile_model(str(onnx_path), "CPU")
            paths["openvino (default)"] = BenchmarkPath(
                lambda images: torch.from_numpy(compiled(images.numpy())[0].copy()).float(), "bf16"
            )
    return paths


def _real_images(data, preprocess) -> torch.Tensor:
    """Up to 64 real images, preprocessed: from `data`, or the built-in digits' validation set."""
    paths = list_images(Path(data).expanduser()) if data else [p for p, _ in discover_splits(digits_folder()).val]
    step = max(1, len(paths) // 64)
    samples = [(path, 0) for path in paths[::step][:64]]
    dataset = ImageListDataset(samples, build_transform(preprocess))
    images, _, _ = next(iter(DataLoader(dataset, batch_size=len(samples), collate_fn=collate_skipping_failures)))
    return images


def _row(result: PathResult, results: list[PathResult], macs: int, ceilings: dict) -> dict:
    baseline = next(r for r in results if r.name == BASELINE and r.batch_size == result.batch_size)
    gflops = 2 * macs * result.images_per_s / 1e9
    ceiling = ceilings.get(result.precision, ceilings["fp32"])
    return {
        "path": result.name,
        "batch_size": result.batch_size,
        "images_per_s": result.images_per_s,
        "ratio_to_baseline": result.images_per_s / baseline.images_per_s,
        "latency_p50_ms": result.median * 1000,
        "latency_p90_ms": result.p90 * 1000,
        "gflops": gflops,
        "fraction_of_ceiling": gflops / ceiling,
        "top1_agreement_vs_fp32": result.agreement,
        "max_logit_diff_vs_fp32": result.max_logit_diff,
    }


def _training_throughput(name, device, fast_precision, img_size, ceilings: dict, keep: bool, rounds: int = 4) -> list:
    """Forward + backward + optimizer steps per second, in interleaved rounds: eager fp32 (as most users train)
    against vggnet's default path (channels_last, autocast at the fast precision, a fused optimizer, freed memory
    kept), for the full model at `img_size` (batch 8) and a compact one at 32x32 (batch 128). A training step
    counts as three forward passes of work (the backward pass computes gradients of inputs and of weights). Each row
    also gives the rate of the data pipeline alone at its input size, to compare with the training rates."""
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
            for label, path in paths.items():
                seconds = _timed_call(path, device)
                if round:
                    durations[label].append(seconds)
        timings = {label: batch / statistics.median(times) for label, times in durations.items()}
        fp32, default = timings.values()
        flops_per_image = 3 * 2 * summarize(name, size, num_classes=10, head=head).total_macs
        rows.append(
            {
                "model": f"{name} ({head}, {size}x{size})",
                "batch_size": batch,
                "images_per_s": timings,
                "ratio": default / fp32,
                "fraction_of_ceiling": {
                    label: flops_per_image * rate / 1e9 / ceilings.get(path.precision, ceilings["fp32"])
                    for (label, rate), path in zip(timings.items(), paths.values(), strict=True)
                },
                "data_pipeline_images_per_s": _data_pipeline_rate(size),
            }
        )
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


def render_benchmark(report: dict) -> str:
    """The report as text tables."""
    ceilings = ", ".join(f"{k} {v:,.0f} GFLOP/s" for k, v in report["ceilings_gflops"].items())
    lines = [
        f"{report['model']} at {report['img_size']}x{report['img_size']} ({report['gmacs_per_image']:.2f} GMACs per "
        f"image), {report['device']}, {report['threads']} threads, torch {report['torch']}",
        f"compute ceiling (best of a 2048^3 matmul and a 256-channel 3x3 convolution): {ceilings}",
        "vggnet's paths keep freed memory for reuse; the baseline and peers run with malloc's default behaviour"
        if report["vggnet_keeps_freed_memory"]
        else f"all paths run with malloc's default behaviour ({OPT_OUT_VARIABLE}=0, or not glibc)",
        "",
    ]
    rows = [
        [
            r["path"], r["batch_size"], f"{r['images_per_s']:.1f}", f"{r['ratio_to_baseline']:.2f}x",
            f"{r['latency_p50_ms']:.1f}", f"{r['latency_p90_ms']:.1f}", f"{r['gflops']:.0f}",
            f"{r['fraction_of_ceiling']:.0%}", f"{r['top1_agreement_vs_fp32']:.1%}",
            f"{r['max_logit_diff_vs_fp32']:.2g}",
        ]
        for r in report["inference"]
    ]  # fmt: skip
    headers = ["path", "batch", "images/s", "vs baseline", "p50 ms", "p90 ms", "GFLOP/s", "of ceiling",
               "top-1 agree", "max logit diff"]  # fmt: skip
    lines.append(render_table(headers, rows))
    lines.append(f"(agreement on {report['agreement_images']} real images, against vggnet fp32)")
    if "training" in report:
        train_rows = []
        for row in report["training"]:
            (fp32_label, fp32), (default_label, default) = row["images_per_s"].items()
            fp32_fraction, default_fraction = row["fraction_of_ceiling"].values()
            train_rows.append(
                [row["model"], row["batch_size"], f"{fp32:.1f}", f"{fp32_fraction:.0%}", f"{default:.1f}",
                 f"{default_fraction:.0%}", f"{row['ratio']:.2f}x", f"{row['data_pipeline_images_per_s']:.0f}"]
            )  # fmt: skip
        workers = f"{default_workers()} loader worker{'s' * (default_workers() != 1)}"
        lines += ["", "training (forward + backward + SGD step), images/s and fraction of the ceiling; the data "
                  f"pipeline alone (decode + augment, {workers}), images/s:"]  # fmt: skip
        headers = ["model", "batch", fp32_label, "of ceiling", default_label, "of ceiling", "ratio", "data pipeline"]
        lines.append(render_table(headers, train_rows))
    return "\n".join(lines)
