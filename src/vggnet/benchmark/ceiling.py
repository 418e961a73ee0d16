"""The machine's own compute ceilings: the GFLOP/s it reaches on the dense work VGG is made of, in each precision.

Each benchmarked path's achieved GFLOP/s is reported as a fraction of its precision's ceiling. The ceilings are
sampled before, between and after the timed rounds (`CeilingSamples`): the best sample is the ceiling, and a spread
of the samples above 10% (`BUSY_SPREAD`) means that the machine was busy, which the report says instead of claiming
fractions.
"""

import time
from collections.abc import Callable

import torch

from .timing import synchronize

# A ceiling whose samples differ by more than this (of the best) says the machine was busy during the run.
BUSY_SPREAD = 0.10
# How often each ceiling sample times its kernels (the fastest call counts); samples are taken many times.
SAMPLE_REPEATS = 3
# The ceiling's work on each kind of device: a matrix product of side n (n^3 multiply-adds) and a 3x3 convolution
# (batch, channels in and out, side of the map). A GPU does the CPU's in tens of microseconds, where a timer's and a
# launch's overhead count: there, the larger shapes (8192^3 is what H100/H200 figures are quoted at).
_SHAPES = {"cpu": (2048, (8, 256, 56)), "cuda": (8192, (64, 256, 56))}


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


def ceiling_kernels(device: torch.device) -> str:
    """The ceiling's work on `device`, in words (for the report)."""
    side, (batch, channels, _) = _SHAPES[device.type]
    return f"a {side}^3 matmul and a {channels}-channel 3x3 convolution at batch {batch}"


def compute_ceiling(dtype: torch.dtype, device: torch.device, repeats: int = 10) -> float:
    """GFLOP/s this machine reaches in `dtype` on the dense work that VGG is made of: the larger of a matrix
    product and a 256-channel 3x3 convolution on a 56x56 map, channels_last (`ceiling_kernels` says their sizes:
    2048^3 and batch 8 on a CPU, larger on a GPU).

    For int8 (GOP/s), the same two shapes run through the kernels that the int8 path's compiled graph calls (as
    torch.profiler shows): oneDNN's quantized linear and convolution, uint8 activations times int8 weights
    prepacked per channel, requantized to uint8 (with the ReLU fused, for the convolution). A plain int8 matrix
    product (`torch._int_mm`), the kernel measured before, is not what the path runs, and the path outran it.
    """
    with torch.no_grad():
        kernels = _int8_kernels() if dtype == torch.int8 else _float_kernels(dtype, device)
        return max(_rate(work, operations, device, repeats) for work, operations in kernels)


def _float_kernels(dtype: torch.dtype, device: torch.device) -> list[tuple[Callable, int]]:
    n, (batch, channels, side) = _SHAPES[device.type]
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).eval().to(device=device, dtype=dtype)
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, side, side, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    return [(lambda: a @ b, 2 * n**3), (lambda: conv(x), 2 * channels * channels * 9 * side * side * batch)]


def _int8_kernels() -> list[tuple[Callable, int]]:
    """oneDNN's int8 linear and 3x3 convolution (CPU), called as inductor's int8 graph calls them."""
    onednn = torch.ops.onednn
    x_scale, x_zero_point, out_scale = 0.02, 128, 0.05  # any valid quantization; the speed does not depend on it
    n, (batch, channels, side) = _SHAPES["cpu"]
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

    a = torch.randint(0, 256, (n, n), dtype=torch.uint8)
    b = torch.randint(-127, 128, (n, n), dtype=torch.int8)
    b_scales, b_zero_points = torch.full((n,), 0.01), torch.zeros(n, dtype=torch.int64)
    packed_b = onednn.qlinear_prepack(b, list(a.shape))

    def matmul():
        return onednn.qlinear_pointwise(
            a, x_scale, x_zero_point, packed_b, b_scales, b_zero_points, None, out_scale, 0, torch.uint8, "none", [],
            "",
        )  # fmt: skip

    return [(matmul, 2 * n**3), (conv, 2 * channels * channels * 9 * side * side * batch)]


def _rate(work, flops: int, device: torch.device, repeats: int) -> float:
    """GFLOP/s of the fastest of `repeats` timed calls (a ceiling: the machine's best, not its average)."""
    for _ in range(2):
        work()
    fastest = float("inf")
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        work()
        synchronize(device)
        fastest = min(fastest, time.perf_counter() - started)
    return flops / fastest / 1e9
