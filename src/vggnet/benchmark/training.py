"""Training throughput: eager fp32 (as most users train) against vggnet's default training path, with each
path's fraction of its precision's compute ceiling, and the rate of the data pipeline alone to compare with.
"""

import functools
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..analysis import summarize
from ..data import ImageListDataset, Preprocess, collate_skipping_failures, digits_folder, discover_splits
from ..models.factory import create_model
from ..runtime import default_workers
from ..training.step import train_step
from .ceiling import CeilingSamples
from .timing import BenchmarkPath, timed_call

# The training rows' batch sizes on each kind of device: (the full model at the input size, the compact one at
# 32x32). A GPU at a CPU's batch of 8 would measure launch overheads, not training.
TRAINING_BATCHES = {"cpu": (8, 128), "cuda": (128, 512)}


def training_throughput(
    name, device, fast_precision, img_size, ceiling: CeilingSamples, keep: bool, rounds: int = 4, compile=False
) -> list:
    """Forward + backward + optimizer steps per second, in interleaved rounds: eager fp32 (as most users train)
    against vggnet's default path (channels_last, autocast at the fast precision, a fused optimizer, freed memory
    kept; on a GPU, cuDNN's autotuning) and, with `compile`, the same path with the model under torch.compile
    (which fuses the pointwise work around the convolutions: bias, ReLU, pooling), for the full model at `img_size`
    and a compact one at 32x32, at the device's `TRAINING_BATCHES` (8 and 128 on a CPU). A training step
    counts as three forward passes of work (the backward pass computes gradients of inputs and of weights). Each
    timed round is followed by a sample of the ceiling; the fractions of it are worked out once the last sample is
    in (`training_fractions`). Each row also gives the rate of the data pipeline alone at its input size, to
    compare with the training rates."""
    rows = []
    full_batch, compact_batch = TRAINING_BATCHES[device.type]
    digits = discover_splits(digits_folder()).train
    for head, size, batch in (("classic", img_size, full_batch), ("compact", 32, compact_batch)):
        images, labels = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
        default = f"default ({fast_precision})"
        paths = {
            "fp32": BenchmarkPath(make_training_step(name, head, device, images, labels), "fp32"),
            default: BenchmarkPath(
                make_training_step(name, head, device, images, labels, fast_precision), fast_precision, keep
            ),
        }
        if compile:
            paths[f"{default} + torch.compile"] = BenchmarkPath(
                make_training_step(name, head, device, images, labels, fast_precision, compile=True),
                fast_precision,
                keep,
            )
        durations = {label: [] for label in paths}
        for round in range(rounds + 1):  # the first round warms up (and compiles)
            seconds = {label: timed_call(path, device) for label, path in paths.items()}
            if round:
                for label, duration in seconds.items():
                    durations[label].append(duration)
                ceiling.sample()
        timings = {label: batch / statistics.median(times) for label, times in durations.items()}
        flops_per_image = 3 * 2 * summarize(name, size, num_classes=10, head=head).total_macs
        rows.append(
            {
                "model": f"{name} ({head}, {size}x{size})",
                "batch_size": batch,
                "images_per_s": timings,
                "precisions": {label: path.precision for label, path in paths.items()},
                "ratio": timings[default] / timings["fp32"],
                "gflops": {label: flops_per_image * rate / 1e9 for label, rate in timings.items()},
                # The digits, with the default loader workers.
                "data_pipeline_images_per_s": data_pipeline_rate(digits[:512], size, default_workers()),
            }
        )
    return rows


def training_fractions(rows: list[dict], ceilings: dict) -> list[dict]:
    """The training rows with each path's fraction of its precision's ceiling."""
    for row in rows:
        row["fraction_of_ceiling"] = {
            label: gflops / ceilings[row["precisions"][label]] for label, gflops in row["gflops"].items()
        }
    return rows


def make_training_step(name, head, device, images, labels, precision=None, compile=False) -> Callable[[], None]:
    """One SGD step (`train_step`) of a fresh model: without `precision`, the baseline: its layers as plain PyTorch
    modules in eager fp32, NCHW (as most users train: none of `training_conv`'s CPU kernels); with it, vggnet's
    default path at that precision, as its trainer runs it (channels_last, fused SGD, cuDNN's autotuning on a GPU),
    fp32 included; with `compile` too, its model under torch.compile (compiled on the first step)."""
    torch.manual_seed(0)
    vggnet = precision is not None
    memory_format = torch.channels_last if vggnet else torch.contiguous_format
    model = create_model(name, num_classes=10, head=head).to(device=device, memory_format=memory_format).train()
    if not vggnet:
        model = nn.Sequential(model.features, model.avgpool, model.flatten, model.classifier)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=vggnet or None)
    images = images.to(device=device, memory_format=memory_format)
    labels = labels.to(device)
    runs = torch.compile(model) if compile else model
    step = functools.partial(train_step, runs, images, labels, optimizer, precision=precision or "fp32")
    return _cudnn_autotuned(step) if vggnet and device.type == "cuda" else step


def _cudnn_autotuned(step: Callable[[], None]) -> Callable[[], None]:
    """`step` with cuDNN timing its algorithms for each new shape and keeping the fastest, as vggnet's trainer runs
    on a GPU (`seed_everything`), and PyTorch's default (its heuristics) restored after, for the baseline."""

    def autotuned() -> None:
        saved, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, True
        try:
            step()
        finally:
            torch.backends.cudnn.benchmark = saved

    return autotuned


def data_pipeline_rate(samples: list, img_size: int, workers: int, batch_size: int = 64) -> float:
    """Images per second of decoding, the training augmentation to `img_size` and collation alone, for (path,
    label) `samples` through a loader with `workers` processes (whose start counts, as once per epoch)."""
    preprocess = Preprocess.imagenet(img_size, crop_pct=1.0)
    dataset = ImageListDataset(samples, preprocess.transform(train=True), preprocess.decode_size)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_skipping_failures)
    started = time.perf_counter()
    count = sum(len(labels) for _, labels, _ in loader)
    rate = count / (time.perf_counter() - started)
    if count != len(samples):
        raise RuntimeError(f"{len(samples) - count} of the {len(samples)} images failed to load")
    return rate
