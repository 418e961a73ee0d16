"""One timed call of a benchmarked path: the device synchronised around it, and the allocator set as the path's
own program would set it.

vggnet's paths run with freed memory kept for reuse, as the `vggnet` command sets up (`allocator`); the baseline
and the peers with malloc's default behaviour, switched before each timed call, as in a process of their own.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..allocator import keep_freed_memory, release_freed_memory


@dataclass
class BenchmarkPath:
    """A way of running the model, as the benchmark times it."""

    run: Callable  # inference: a float32 batch to float32 logits on the CPU; training: one step
    precision: str
    keeps_freed_memory: bool = False  # vggnet's paths: as its commands set it up; the baseline and peers: never


def use_allocator_of(path: BenchmarkPath) -> None:
    """vggnet's paths run with freed memory kept for reuse where its command set that up; the baseline and the
    peers with the C allocator's default behaviour, as in a process of their own."""
    (keep_freed_memory if path.keeps_freed_memory else release_freed_memory)()


def timed_call(path: BenchmarkPath, device: torch.device, *args) -> float:
    """Seconds of one call of `path` (with its allocator setting), the device synchronised around it."""
    use_allocator_of(path)
    synchronize(device)
    started = time.perf_counter()
    path.run(*args)
    synchronize(device)
    return time.perf_counter() - started


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (CUDA runs asynchronously; the CPU has nothing to wait for)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
