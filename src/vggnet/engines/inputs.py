"""The inputs of a batch job: files, folders and globs (as `predict` takes them), and lists of paths in a text file
(one per line), a CSV or a Parquet table (`--list paths.txt`, `--list table.parquet --path-column path`).

A relative path in a list is relative to the list's folder (or the `images/` beside it, or `--image-root`), so that
a list travels with its images; the path is reported as the list wrote it, which is the key to join results back
to the table. Tables are read as training reads them (`data.tables`).
"""

from dataclasses import dataclass
from pathlib import Path

from ..data.tables import TABLE_SUFFIXES, image_folder, path_column_of, read_columns
from ..infer.batches import expand_inputs


@dataclass(frozen=True)
class Entry:
    """One input: `path` as reported, `file` to read, `error` when it names nothing readable (else None)."""

    path: str
    file: str
    error: str | None = None


def collect_inputs(
    paths: list[str | Path],
    lists: list[str | Path] = (),
    path_column: str | None = None,
    image_root: str | Path | None = None,
) -> list[Entry]:
    """Every input in order: `paths` expanded (folders recursively, globs), then each list's paths.

    >>> from pathlib import Path
    >>> Path("photos").mkdir()
    >>> for name in ("a.png", "b.png", "paths.txt"):
    ...     _ = (Path("photos") / name).write_text("a.png\\n\\nb.png\\n")
    >>> [(entry.path, entry.file) for entry in collect_inputs([], ["photos/paths.txt"])]
    [('a.png', 'photos/a.png'), ('b.png', 'photos/b.png')]

    Args:
        path_column: A table's path column (`--path-column`): by default `path`, or `filename` in a table without
            `path`, as for training's tables.
        image_root: The folder that relative paths are relative to (`--image-root`); by default the list's folder,
            or the `images/` folder beside it when that is where the list's first images are (`data.tables`).

    Raises:
        ValueError: a list file is missing, of a kind not read here, or has no such path column.
    """
    entries = [Entry(path, path, error) for path, error in expand_inputs(list(paths))]
    for listing in map(Path, lists):
        listed = read_list(listing, path_column)
        folder = image_folder(listing, listed, image_root) if listed else listing.parent
        for path in listed:
            file = path if Path(path).is_absolute() else str(folder / path)
            entries.append(Entry(path, file, None if Path(file).is_file() else "no such file or folder"))
    return entries


def read_list(listing: Path, path_column: str | None = None) -> list[str]:
    """The paths a list file holds: a text file's non-empty lines, or a CSV or Parquet table's path column (see
    `collect_inputs`)."""
    if not listing.is_file():
        raise ValueError(f"--list {listing}: no such file")
    suffix = listing.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        column = path_column_of(listing, path_column, "--list")
        return [path for path in read_columns(listing, {column: "--path-column"}, "--list")[column] if path]
    if suffix in ("", ".txt", ".lst"):
        lines = listing.read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip()]
    raise ValueError(f"--list {listing}: a list is a .txt (one path per line), .csv or .parquet file")
