"""Where a command writes, checked before the long work: a `--out` that cannot be written is reported at once,
naming the flag, the path and why, rather than as a traceback from the first write after the data scan, the
calibration or the inference.

    >>> Path("afile.png").touch()
    >>> output_file("afile.png/e.npz", "--out")
    Traceback (most recent call last):
    ValueError: --out afile.png/e.npz: afile.png is a file, not a folder; choose another --out

The checks create nothing, so that a command that fails later leaves no empty folder behind. Whether the missing
folders could be made is found by making and removing a hidden folder in the nearest existing one: the only test
that catches every refusal (permissions, a read-only disk, /proc), root's included, whom `os.access` allows all.
"""

import os
import tempfile
from pathlib import Path


def output_folder(path: str | Path, flag: str) -> Path:
    """`path` (with `~` expanded) once it is sure to serve as an output folder: an existing folder that can be
    written in, or a path whose missing folders can be made.

    Raises:
        ValueError: `path` or a folder above it is a file, or the nearest existing folder cannot be written in.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file, not a folder; choose another {flag}")
    _check_writable(path, path, flag)
    return path


def output_file(path: str | Path, flag: str) -> Path:
    """`path` (with `~` expanded) once it is sure to serve as an output file: not a folder, in a folder that
    exists and can be written in or can be made. An existing file is left to the caller (overwritten, or refused).

    Raises:
        ValueError: `path` is a folder, a folder above it is a file, or the nearest existing folder cannot be
            written in.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder, not a file; choose another {flag}")
    _check_writable(path.parent, path, flag)
    return path


def _check_writable(folder: Path, path: Path, flag: str) -> None:
    """Raise unless files can be made in `folder`, once its missing folders are (`path` is what `flag` named)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ValueError(f"{flag} {path}: {existing} is a file, not a folder; choose another {flag}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".vggnet-probe-", dir=existing))
    except OSError as error:
        reason = error.strerror or str(error)
        raise ValueError(f"{flag} {path}: cannot write in {existing} ({reason}); choose another {flag}") from error
