"""Labelled image tables as datasets: a CSV or Parquet file with a path and a label column, for training and
evaluation, and the column reader that every table the CLI takes goes through.

    vggnet train --data labels.csv                                 # columns path,label: split by --val-split
    vggnet train --data labels.parquet --split-column split         # rows marked train or val; others left out
    vggnet train --data mini-imagenet/                              # train.csv, val.csv, test.csv and images/
    vggnet eval --model runs/train/exp/best.pt --data labels.parquet --split-column split    # its val rows

The rules:

- Columns: the paths are in `--path-column`: by default `path`, or `filename` (mini-ImageNet's) in a table that has
  no `path`; the labels in `--label-column` (`label`). The classes are the sorted distinct labels, as torchvision's
  ImageFolder sorts class folders. Every row needs a path and a label.
- Paths: a relative path is relative to `--image-root` when given, else to the table's folder, or to the `images/`
  folder beside the table when that is where the table's first images are (as mini-ImageNet keeps them). An image
  missing further down counts as unreadable, like a corrupt one: training's check skips it, or refuses it under
  `--strict`; evaluation leaves it out.
- Splits of one table: with `--split-column`, its rows marked `train` and `val` (or `valid`, `validation`; any
  case); other rows (`test`, say) are left out. Without, `--val-split` of each class is held out, seeded, as for
  class folders.
- A folder of tables: one holding `train`, `val` (or `valid`, `validation`) or `test` tables (`.csv` or `.parquet`)
  and none of the class-folder layout's `train/`, `val/`... sub-folders. Training reads its train table, with its val
  table as the validation split when both hold the same classes. When they hold entirely different classes
  (mini-ImageNet's few-shot split: 64, 16 and 20 classes), the folder's train, val and test tables are pooled and
  `--val-split` of each class held out: mini-ImageNet's 100-class classification. With no val table, the train
  table is split by `--val-split`. Evaluation reads the val table (or valid, validation, test), as it reads
  `val/` (or `valid/`, `validation/`, `test/`) in a folder of class folders; after pooled training, the val
  table's images were mostly trained on.
"""

import csv
import itertools
from dataclasses import dataclass, fields
from pathlib import Path

from ..extras import require
from .folders import (
    EVAL_FOLDER_NAMES,
    VAL_FOLDER_NAMES,
    DatasetSplits,
    Sample,
    discover_splits,
    evaluation_samples,
    hold_out,
    to_model_classes,
)

TABLE_SUFFIXES = (".csv", ".parquet")
# A table without a `path` column names its images in the first of these it has.
PATH_COLUMNS = ("path", "filename")
# The first rows whose images are looked for to place a table's relative paths (one missing file is no verdict).
PROBED_ROWS = 10


@dataclass(frozen=True)
class TableColumns:
    """How to read a labelled table: the path, label and split columns, and the folder its relative paths are
    relative to (None: see the module docstring)."""

    path: str | None = None
    label: str = "label"
    split: str | None = None
    image_root: str | Path | None = None

    def given(self) -> list[str]:
        """The flags set to other than their defaults."""
        return [_FLAGS[column.name] for column in fields(self) if getattr(self, column.name) != column.default]


_FLAGS = {"path": "--path-column", "label": "--label-column", "split": "--split-column", "image_root": "--image-root"}


@dataclass
class _Rows:
    """A table's rows: each image's file, label and (with a split column) split."""

    table: Path
    paths: list[Path]
    labels: list[str]
    splits: list[str] | None

    def samples(self, classes: list[str]) -> list[Sample]:
        """(path, index of its label in `classes`) of each row."""
        index = {name: i for i, name in enumerate(classes)}
        return [(path, index[label]) for path, label in zip(self.paths, self.labels, strict=True)]

    def in_split(self, names: tuple[str, ...]) -> "_Rows":
        """The rows whose split is one of `names`."""
        kept = [i for i, split in enumerate(self.splits) if split in names]
        return _Rows(self.table, [self.paths[i] for i in kept], [self.labels[i] for i in kept], None)


def splits_of(
    data: str | Path, columns: TableColumns = TableColumns(), val_split: float = 0.2, seed: int = 0
) -> DatasetSplits:
    """The train and validation samples of `data`: a table, a folder of tables, or a folder of class folders
    (`discover_splits`).

    Raises:
        ValueError: the data is missing or cannot be used as it is, with what to change.
    """
    data = Path(data).expanduser()
    if _is_table(data):
        return _table_splits(_read_rows(data, columns), columns, val_split, seed)
    tables = _tables_in(data)
    if not tables:
        _refuse_columns(data, columns)
        return discover_splits(data, val_split, seed)
    if columns.split is not None:
        raise ValueError(
            f"--split-column applies to a single table, and {data} is a folder of tables, split by their names: "
            f"drop --split-column, or pass the table with the column, e.g. --data {next(iter(tables.values()))}"
        )
    if "train" not in tables:
        listing = ", ".join(table.name for table in tables.values())
        raise ValueError(f"{data} has tables ({listing}) but no train.csv or train.parquet to train on; add one")
    train = _read_rows(tables["train"], columns)
    val_table = next((tables[name] for name in VAL_FOLDER_NAMES if name in tables), None)
    if val_table is None:
        return _table_splits(train, columns, val_split, seed)
    val = _read_rows(val_table, columns)
    train_classes, val_classes = set(train.labels), set(val.labels)
    if train_classes == val_classes:
        classes = _classes(train, columns)
        layout = f"tables {train.table.name} + {val.table.name}"
        return DatasetSplits(classes, train.samples(classes), val.samples(classes), layout)
    if train_classes & val_classes:
        raise ValueError(
            f"the labels of {train.table} and {val.table} differ (only in {train.table.name}: "
            f"{_some(train_classes - val_classes)}; only in {val.table.name}: {_some(val_classes - train_classes)}); "
            f"give both tables the same classes, or entirely different ones to pool them and split by --val-split"
        )
    pooled = [train, val] + ([_read_rows(tables["test"], columns)] if "test" in tables else [])
    classes = sorted({label for rows in pooled for label in rows.labels})
    samples = [sample for rows in pooled for sample in rows.samples(classes)]
    instead = "give train and val tables of the same classes"
    train_samples, val_samples = hold_out(classes, samples, val_split, seed, instead)
    names = " + ".join(rows.table.name for rows in pooled)
    layout = f"tables {names} pooled (their classes differ), {val_split:.0%} held out per class"
    return DatasetSplits(classes, train_samples, val_samples, layout)


def evaluation_samples_of(
    data: str | Path, classes: list[str], aliases: dict[str, str] | None = None, columns: TableColumns = TableColumns()
) -> list[Sample]:
    """The labelled images to evaluate a model with `classes` on: a table's rows (with a split column, its val
    rows), a folder of tables' val table (or valid, validation, test), or class folders (`evaluation_samples`,
    which says what `aliases` are). The labels may be some of the model's classes.

    Raises:
        ValueError: the data is missing or cannot be used, or a label is not one of the model's classes.
    """
    data = Path(data).expanduser()
    if not _is_table(data):
        tables = _tables_in(data)
        if not tables:
            _refuse_columns(data, columns)
            return evaluation_samples(data, classes, aliases)
        table = next((tables[name] for name in EVAL_FOLDER_NAMES if name in tables), None)
        if table is None:
            raise ValueError(
                f"{data} has no val, valid, validation or test table (.csv or .parquet) to evaluate on; pass "
                f"--data {tables['train']} to evaluate on the training table"
            )
        if columns.split is not None:
            raise ValueError(f"--split-column applies to a single table; drop it to evaluate on {table}")
        data = table
    rows = _read_rows(data, columns)
    if rows.splits is not None:
        rows = _split(rows, columns, "val")
    found = sorted(set(rows.labels))
    where = f"the labels of {data} (column {columns.label!r})"
    return to_model_classes(
        rows.samples(found), found, classes, aliases, where=where, fix="label the rows with", absent="row"
    )


def column_names(table: Path, flag: str = "--data") -> list[str]:
    """The column names of a CSV or Parquet table.

    Raises:
        ValueError: the file is missing, or is not a .csv or .parquet table.
    """
    if not table.is_file():
        raise ValueError(f"{flag} {table}: no such file")
    suffix = table.suffix.lower()
    if suffix == ".parquet":
        return list(_parquet().read_schema(table).names)
    if suffix == ".csv":
        with open(table, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
            return next(csv.reader(f), [])
    raise ValueError(f"{flag} {table}: a table is a .csv or .parquet file")


def read_columns(table: Path, wanted: dict[str, str], flag: str = "--data") -> dict[str, list[str]]:
    """The values of the `wanted` columns of a CSV or Parquet table, as text ("" where empty or null). A CSV's
    blank lines are not rows.

    Args:
        wanted: {column: the flag that names it}, for the message when the table has no such column.
        flag: The flag that gave the table, for the messages.

    Raises:
        ValueError: the file is missing, is not a .csv or .parquet table, or has no column of `wanted`; the message
            names the columns it has and the flag to name another.
    """
    names = column_names(table, flag)
    for column, column_flag in wanted.items():
        if column not in names:
            raise ValueError(
                f"{flag} {table} has no column {column!r} (it has: {', '.join(names)}); name it with {column_flag}"
            )
    if table.suffix.lower() == ".parquet":
        content = _parquet().read_table(table, columns=list(wanted)).to_pydict()
        return {column: ["" if value is None else str(value) for value in content[column]] for column in wanted}
    positions = {column: names.index(column) for column in wanted}
    values = {column: [] for column in wanted}
    with open(table, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader)  # the header
        for row in reader:
            if row:
                for column, position in positions.items():
                    values[column].append(row[position] if position < len(row) else "")
    return values


def _parquet():
    return require("pyarrow.parquet", "parquet", "reading a Parquet table")


def _is_table(data: Path) -> bool:
    """Whether `data` names a table file (which need not exist: reading it then says so).

    Raises:
        ValueError: `data` is a file of another kind.
    """
    if data.is_file() and data.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"--data {data} is a file but not a table; pass a .csv or .parquet table, or a folder")
    return data.suffix.lower() in TABLE_SUFFIXES and not data.is_dir()


def _tables_in(folder: Path) -> dict[str, Path]:
    """The train, val, valid, validation and test tables of `folder` by name, if it is a folder of tables: none
    when it has the sub-folders of the class-folder layouts (those layouts come first)."""
    names = ("train", *EVAL_FOLDER_NAMES)
    if not folder.is_dir() or any((folder / name).is_dir() for name in names):
        return {}
    found = {}
    for name in names:
        for table in (folder / f"{name}{suffix}" for suffix in TABLE_SUFFIXES):
            if table.is_file() and name not in found:
                found[name] = table
    return found


def _refuse_columns(data: Path, columns: TableColumns) -> None:
    given = columns.given()
    if given:
        raise ValueError(
            f"{given[0]} applies to tables (a .csv or .parquet file, or a folder of train.csv, val.csv...), and "
            f"--data {data} is not one: drop {' and '.join(given)}, or pass a table"
        )


def _read_rows(table: Path, columns: TableColumns) -> _Rows:
    """A table's rows, with their image files placed (see the module docstring)."""
    path_column = path_column_of(table, columns.path)
    wanted = {path_column: "--path-column", columns.label: "--label-column"}
    if columns.split is not None:
        wanted[columns.split] = "--split-column"
    values = read_columns(table, wanted)
    for column, role in ((path_column, "path"), (columns.label, "label")):
        empty = [i for i, value in enumerate(values[column]) if not value.strip()]
        if empty:
            raise ValueError(
                f"{table} has {len(empty)} row(s) with no {role} in column {column!r} (the first: row {empty[0] + 1} "
                f"after the header); give every row a {role}, or remove those rows"
            )
    paths = values[path_column]
    folder = image_folder(table, paths, columns.image_root)
    splits = None if columns.split is None else [value.strip().lower() for value in values[columns.split]]
    return _Rows(table, [folder / path for path in paths], values[columns.label], splits)


def path_column_of(table: Path, given: str | None, flag: str = "--data") -> str:
    """The column of `table` that holds the image paths: `given` (--path-column), else the first of PATH_COLUMNS the
    table has (else the first, which `read_columns` then reports missing)."""
    return given or next((c for c in PATH_COLUMNS if c in column_names(table, flag)), PATH_COLUMNS[0])


def image_folder(table: Path, paths: list[str], image_root: str | Path | None = None) -> Path:
    """The folder that the relative ones of a table's `paths` are relative to: `image_root`, else the table's
    folder, or the `images/` folder beside it, whichever holds one of the first PROBED_ROWS of them.

    Raises:
        ValueError: `image_root` is not a folder, or holds none of the first images, or neither candidate does.
    """
    probe = list(itertools.islice((path for path in paths if not Path(path).is_absolute()), PROBED_ROWS))
    if image_root is not None:
        root = Path(image_root).expanduser()
        if not root.is_dir():
            raise ValueError(f"--image-root {root} is not a folder; pass the folder the table's paths are relative to")
        candidates = [root]
    else:
        candidates = [table.parent, table.parent / "images"]
    if not probe:  # every path is absolute
        return candidates[0]
    for folder in candidates:
        if any((folder / path).is_file() for path in probe):
            return folder
    where = f"in {' or '.join(map(str, candidates))}" if image_root is None else f"under --image-root {root}"
    raise ValueError(
        f"none of the first {len(probe)} images of {table} (e.g. {probe[0]!r}) is {where}; pass --image-root DIR, "
        f"the folder that the table's paths are relative to"
    )


def _table_splits(rows: _Rows, columns: TableColumns, val_split: float, seed: int) -> DatasetSplits:
    """One table's splits: by its split column, or by `val_split` of each class."""
    if rows.splits is None:
        classes = _classes(rows, columns)
        instead = "mark each row train or val in a column that --split-column names"
        train, val = hold_out(classes, rows.samples(classes), val_split, seed, instead)
        return DatasetSplits(classes, train, val, f"table {rows.table.name}, {val_split:.0%} held out per class")
    train, val = _split(rows, columns, "train"), _split(rows, columns, "val")
    train_classes, val_classes = set(train.labels), set(val.labels)
    if train_classes != val_classes:
        raise ValueError(
            f"every class of {rows.table} needs train and val rows (only in train: "
            f"{_some(train_classes - val_classes)}; only in val: {_some(val_classes - train_classes)}); add rows, or "
            f"drop --split-column to split by --val-split"
        )
    classes = _classes(train, columns)
    layout = f"table {rows.table.name}, split by column {columns.split!r}"
    return DatasetSplits(classes, train.samples(classes), val.samples(classes), layout)


def _classes(rows: _Rows, columns: TableColumns) -> list[str]:
    """The sorted distinct labels of `rows`: two or more, to train a classifier."""
    classes = sorted(set(rows.labels))
    if len(classes) < 2:
        raise ValueError(
            f"{rows.table} has {len(classes)} label(s) in column {columns.label!r} ({_some(classes)}); a classifier "
            f"needs two or more: label the rows with their classes, or name the label column with --label-column"
        )
    return classes


def _split(rows: _Rows, columns: TableColumns, split: str) -> _Rows:
    """The rows of `split` ("train" or "val": also "valid", "validation") by the split column.

    Raises:
        ValueError: there are none.
    """
    names = ("train",) if split == "train" else VAL_FOLDER_NAMES
    kept = rows.in_split(names)
    if not kept.paths:
        raise ValueError(
            f"column {columns.split!r} of {rows.table} has no {' or '.join(map(repr, names))} rows (its values: "
            f"{_some(set(rows.splits))}); mark the training rows 'train' and the validation rows 'val' (other rows "
            f"are left out)"
        )
    return kept


def _some(names) -> str:
    """Up to ten of `names`, sorted, for a message."""
    names = sorted(names)
    return (", ".join(names[:10]) + (" ..." if len(names) > 10 else "")) if names else "none"
