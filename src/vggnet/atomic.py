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


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (metrics.csv, config.yaml)."""
    _write_atomically(Path(path), lambda f: f.write(text), binary=False)


def _write_atomically(path: Path, write: Callable[[IO], object], binary: bool) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)
