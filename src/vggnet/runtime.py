"""Device and numeric precision: what `--device` and `--precision` resolve to on this machine."""

import logging
import os
from pathlib import Path

import torch

from .choices import DEVICES, PRECISIONS

logger = logging.getLogger("vggnet")

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when a GPU is visible, else the CPU."""
    if name not in DEVICES:
        raise ValueError(f"unknown --device {name!r}; choose one of: {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but no CUDA device is visible; use --device cpu or --device auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where bf16 matrix products run in hardware."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(check is not None for check in checks):
        return any(check() for check in checks if check is not None)
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` is bf16 where the hardware runs it natively (bf16 GPUs, AVX512-BF16/AMX CPUs), else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown --precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        fallback = "bf16" if cpu_has_native_bf16() else "fp32"
        logger.warning("--precision fp16 needs a CUDA device; using %s on the CPU instead", fallback)
        return fallback
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        logger.warning("this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 runs emulated and slowly")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype for a resolved precision; None for fp32."""
    return _AUTOCAST_DTYPES.get(precision)


def loader_workers(workers: int | None, images: int, batch_size: int) -> int:
    """Decoding processes for a batch verb: `workers` as asked, or for None (auto) `default_workers()` when the
    images make more than one batch (decoding the next batch while the model runs), else 0 (starting a process
    costs more than decoding one batch)."""
    if workers is not None and workers < 0:
        raise ValueError(f"--workers must be 0 (decode in this process) or more, got {workers}")
    if workers is None:
        return default_workers() if images > batch_size else 0
    return workers


def default_workers() -> int:
    """Data-loading processes: one per spare core, at most 8 (0 loads in the training process)."""
    return max(0, min(8, usable_cores() - 1))


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def available_memory_bytes() -> int | None:
    """The memory the system can give without swapping (Linux's MemAvailable, which counts reclaimable caches), or
    the free memory where there is no /proc/meminfo; None where neither is known."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
