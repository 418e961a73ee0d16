"""Writes that a crash cannot tear: a temporary file in the same folder, flushed and fsynced, then renamed over
the target. At any moment the target is the previous complete file or the new one."""

import os
from pathlib import Path

import torch


def atomic_save(content: dict, path: Path) -> None:
    """Write with `torch.save` to a temporary file in the same folder, flush and fsync it, then rename it over
    `path`: a crash at any moment leaves either the previous file or the new one, never a torn one."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as f:
            torch.save(content, f)
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


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_save` for text files (metrics.csv, config.yaml)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
