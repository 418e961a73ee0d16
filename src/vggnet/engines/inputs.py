"""The inputs of a batch job: files, folders and globs (as `predict` takes them), and lists of paths in a text file
(one per line), a CSV or a Parquet table (`--list paths.txt`, `--list table.parquet --path-column path`).

A relative path in a list is relative to the list's folder, so that a list travels with its images; the path is
reported as the list wrote it, which is the key to join results back to the table.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

from ..extras import require
from ..infer.batches import expand_inputs


@dataclass(frozen=True)
class Entry:
    """One input: `path` as reported, `file` to read, `error` when it names nothing readable (else None)."""

    path: str
    file: str
    error: str | None = None


def collect_inputs(paths: list[str | Path], lists: list[str | Path] = (), path_column: str = "path") -> list[Entry]:
    """Every input in order: `paths` expanded (folders recursively, globs), then each list's paths.

    >>> from pathlib import Path
    >>> _ = Path("paths.txt").write_text("a.png\\n\\nphotos/b.jpg\\n")
    >>> [(entry.path, entry.file) for entry in collect_inputs([], ["paths.txt"])]
    [('a.png', 'a.png'), ('photos/b.jpg', 'photos/b.jpg')]

    Raises:
        ValueError: a list file is missing, of a kind not read here, or has no `path_column`.
    """
    entries = [Entry(path, path, error) for path, error in expand_inputs(list(paths))]
    for listing in map(Path, lists):
        folder = listing.parent
        for path in read_list(listing, path_column):
            file = path if Path(path).is_absolute() else str(folder / path)
            entries.append(Entry(path, file, None if Path(file).is_file() else "no such file or folder"))
    return entries


def read_list(listing: Path, path_column: str = "path") -> list[str]:
    """The paths a list file holds: a text file's non-empty lines, or a CSV or Parquet table's `path_column`."""
    if not listing.is_file():
        raise ValueError(f"--list {listing}: no such file")
    suffix = listing.suffix.lower()
    if suffix == ".parquet":
        parquet = require("pyarrow.parquet", "parquet", "reading a Parquet list")
        table = parquet.read_table(listing)
        if path_column not in table.column_names:
            raise ValueError(_no_column(listing, path_column, table.column_names))
        return [str(value) for value in table.column(path_column).to_pylist() if value]
    if suffix == ".csv":
        with open(listing, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if path_column not in (reader.fieldnames or []):
                raise ValueError(_no_column(listing, path_column, reader.fieldnames or []))
            return [row[path_column] for row in reader if row[path_column]]
    if suffix in ("", ".txt", ".lst"):
        lines = listing.read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip()]
    raise ValueError(f"--list {listing}: a list is a .txt (one path per line), .csv or .parquet file")


def _no_column(listing: Path, column: str, columns: list[str]) -> str:
    return f"--list {listing} has no column {column!r} (it has: {', '.join(columns)}); name it with --path-column"
