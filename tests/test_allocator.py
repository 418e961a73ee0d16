"""Keeping freed memory for reuse: checked through glibc's own statistics of mapped blocks."""

import ctypes
import platform

import pytest
import torch

from vggnet import allocator
from vggnet.cli import main

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)


def _mapped_blocks() -> int:
    """How many blocks glibc serves with their own mmap right now (`hblks` of mallinfo2, or of mallinfo before
    glibc 2.33: the same fields, as int)."""
    libc = ctypes.CDLL("libc.so.6")
    name, field = ("mallinfo2", ctypes.c_size_t) if hasattr(libc, "mallinfo2") else ("mallinfo", ctypes.c_int)

    class MallInfo(ctypes.Structure):
        _fields_ = [
            (name, field)
            for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                         "fordblks", "keepcost")
        ]  # fmt: skip

    function = getattr(libc, name)
    function.restype = MallInfo
    return function().hblks


@pytest.fixture
def restore_allocator():
    kept = allocator.keeping_freed_memory()
    yield
    (allocator.keep_freed_memory if kept else allocator.release_freed_memory)()


def test_big_tensors_come_from_the_heap_only_while_freed_memory_is_kept(restore_allocator):
    assert allocator.release_freed_memory()
    before = _mapped_blocks()
    big = torch.empty(64 * 2**20, dtype=torch.uint8)  # above glibc's largest mmap threshold (32 MiB)
    assert _mapped_blocks() == before + 1
    del big
    assert _mapped_blocks() == before

    assert allocator.keep_freed_memory() and allocator.keeping_freed_memory()
    big = torch.empty(64 * 2**20, dtype=torch.uint8)
    assert _mapped_blocks() == before
    del big
    again = torch.empty(64 * 2**20, dtype=torch.uint8)  # served from what the heap kept
    assert _mapped_blocks() == before
    del again


def test_the_commands_keep_freed_memory_unless_told_not_to(restore_allocator, monkeypatch, capsys):
    allocator.release_freed_memory()
    monkeypatch.setenv(allocator.OPT_OUT_VARIABLE, "0")
    assert main(["models"]) == 0
    assert not allocator.keeping_freed_memory()
    monkeypatch.delenv(allocator.OPT_OUT_VARIABLE)
    assert main(["models"]) == 0
    assert allocator.keeping_freed_memory()


def test_another_preloaded_allocator_is_left_alone(restore_allocator, monkeypatch):
    allocator.release_freed_memory()
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    allocator._glibc.cache_clear()
    try:
        assert not allocator.keep_freed_memory()
        assert not allocator.keeping_freed_memory()
    finally:
        monkeypatch.delenv("LD_PRELOAD")
        allocator._glibc.cache_clear()
