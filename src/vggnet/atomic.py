"""Writes that a crash cannot tear: a temporary file in the same folder, flushed and fsynced, then renamed over
the target. At any moment the target is the previous complete file or the new one."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

import torch


def atomic_save(content: dict, path: Path) -> None:
    """`torch.save` `content` to `path` atomically (checkpoints)."""
    _write_atomically(Path(path), lambda f: torch.save(content, f), binary=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (exports)."""
    _write_atomically(Path(path), lambda f: f.write(data), binary=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (metrics.csv, config.yaml)."""
    _write_atomically(Path(path), lambda f: f.write(text), binary=False)


def temporary_path(path: Path) -> Path:
    """Where a file for `path` is written before `commit` renames it: a hidden name in the same folder (readers of
    the folder, such as Parquet datasets, skip names that start with a dot)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def commit(temporary: Path, path: Path) -> None:
    """Make a fully written `temporary` (see `temporary_path`) the file `path`: fsync it, rename it over `path`,
    fsync the folder (so that the rename itself is durable)."""
    with open(temporary, "rb") as f:
        os.fsync(f.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _write_atomically(path: Path, write: Callable[[IO], object], binary: bool) -> None:
    temporary = temporary_path(path)
    try:
        with open(temporary, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
            write(f)
        commit(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
