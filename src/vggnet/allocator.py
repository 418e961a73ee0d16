"""How the process's C allocator treats big tensors: kept for reuse (vggnet's setting) or returned to the system.

VGG's tensors are large (a batch of 8 at 224x224 has 100 MB activations; the bf16 copy of vgg16's weights that
autocast makes each training step is 276 MB). glibc's malloc serves every block above 32 MB (and, until its
adaptive threshold has risen, above 128 KB) with a fresh `mmap` and unmaps it on free, so each forward pass and each
training step page-faults and zero-fills all that memory again. Keeping freed memory in the heap for reuse removes
this: on a 2-core CPU it made vgg16 bf16 inference and training at batch 8 1.3x faster (BENCHMARKS.md). The cost:
memory freed stays with the process until exit, and the peak can be higher (fragmentation: 3.6 instead of 3.0 GB
for vgg16 training steps with varying batch sizes).

`vggnet`'s commands turn this on at start (set VGGNET_KEEP_FREED_MEMORY=0 to leave malloc as it is); it is a
setting of the whole process, so the Python API leaves it alone, and a program that wants it says so itself:

    from vggnet.allocator import keep_freed_memory
    keep_freed_memory()

It applies to glibc only (Linux); elsewhere, and with another allocator preloaded (jemalloc, tcmalloc: they already
reuse memory), it does nothing and returns False.
"""

import ctypes
import functools
import os
import platform

OPT_OUT_VARIABLE = "VGGNET_KEEP_FREED_MEMORY"

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
# glibc's own values, for `release_freed_memory`: its mmap count limit and the largest threshold its adaptive rule
# reaches (with trimming at twice that), i.e. the steady state of a process that never called mallopt.
_GLIBC_MMAP_MAX = 65536
_GLIBC_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_KEEP_UP_TO = 2**31 - 1  # mallopt takes an int: give back only a free top of heap above 2 GiB
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")
_keeping = False


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """glibc's library, where it is the allocator in use."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    if any(name in os.environ.get("LD_PRELOAD", "") for name in _OTHER_ALLOCATORS):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Serve big blocks from the heap and keep freed memory for reuse; True where this took effect."""
    global _keeping
    libc = _glibc()
    if libc is None:
        return False
    _keeping = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_UP_TO))
    return _keeping


def release_freed_memory() -> bool:
    """Back to glibc's default behaviour (big blocks mapped and unmapped), returning what the heap kept."""
    global _keeping
    libc = _glibc()
    if libc is None:
        return False
    _keeping = False
    restored = all(
        libc.mallopt(option, value)
        for option, value in (
            (_M_MMAP_MAX, _GLIBC_MMAP_MAX),
            (_M_MMAP_THRESHOLD, _GLIBC_MMAP_THRESHOLD_MAX),
            (_M_TRIM_THRESHOLD, 2 * _GLIBC_MMAP_THRESHOLD_MAX),
        )
    )
    libc.malloc_trim(0)
    return restored


def keeping_freed_memory() -> bool:
    """Whether `keep_freed_memory` is in effect."""
    return _keeping


def configure_for_commands() -> bool:
    """What `vggnet`'s commands do at start: keep freed memory unless VGGNET_KEEP_FREED_MEMORY=0."""
    if os.environ.get(OPT_OUT_VARIABLE, "1").strip() == "0":
        return False
    return keep_freed_memory()
