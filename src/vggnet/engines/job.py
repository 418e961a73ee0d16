"""A streamed job, whichever engine computes it: which shards of the output are still to write, which of their
inputs can be read, and the writing of the rows the engine computes for them, shard by shard, in input order.

An engine turns `Job.files` into batches of results `(indices, columns, failures)`: the indices (into `files`,
increasing from batch to batch) of the images it computed, the task's columns for them, and the (index, reason) of
those it could not decode. `Job.run` writes them.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..extras import require
from .inputs import Entry
from .shards import ParquetShards

# A batch of an engine's results: (indices, columns, failures), as the module docstring says.
Results = tuple[list[int], dict, list[tuple[int, str]]]
# Inputs per shard: a shard is the most a crash can cost, and one file of the output.
SHARD_SIZE = 10_000


@dataclass
class StreamResult:
    """What a streamed job wrote: `rows` (all shards, this run's and earlier ones'), of which `errors` failed;
    `shards` in all, of which `skipped` were already written by an earlier run."""

    out: Path
    rows: int
    errors: int
    shards: int
    skipped: int


class Job:
    """`task` (`tasks.PredictTask` or `tasks.EmbedTask`) on every entry, one row per entry, into the Parquet
    shards of `out`; `precision` is the one the job is recorded with (the task's own, unless the engine's workers
    resolve it for themselves).

    Raises:
        ValueError: a bad shard size, or `out` holds another job's output (see `ParquetShards`).
    """

    def __init__(self, task, entries: list[Entry], out: str | Path, shard_size: int, precision: str | None = None):
        if shard_size < 1:
            raise ValueError(f"--shard-size must be at least 1, got {shard_size}")
        pa = require("pyarrow", "parquet", "Parquet output")
        loaded = task.loaded
        record = {"task": task.name, "model": loaded.source, "precision": precision or loaded.precision,
                  **task.settings(), "inputs": len(entries), "shard_size": shard_size}  # fmt: skip
        self.shards = ParquetShards(out, record)
        self.schema = pa.schema(
            [("path", pa.string()), ("error", pa.string()), *task.columns().items()],
            metadata={"vggnet": json.dumps(task.metadata())},
        )
        self.entries, self.shard_size = entries, shard_size
        count = len(entries)
        self.ranges = [range(start, min(start + shard_size, count)) for start in range(0, count, shard_size)]
        self.pending = [
            index for index, span in enumerate(self.ranges)
            if not self.shards.is_done(index, [entries[position].path for position in span])
        ]  # fmt: skip
        # Positions (in `entries`) of the inputs to compute: the readable ones of the pending shards.
        self.readable = [p for index in self.pending for p in self.ranges[index] if entries[p].error is None]

    @property
    def files(self) -> list[str]:
        """The files the engine computes, in order."""
        return [self.entries[position].file for position in self.readable]

    def run(self, results: Iterable[Results], name: str, progress: bool) -> StreamResult:
        """Write every batch of `results` (see the module docstring), then the shards left with no readable
        input; a shard left incomplete by an exception (Ctrl-C included) is dropped, for the next run to redo."""
        writer = _ShardWriter(self.shards, self.schema, self.entries, self.shard_size, self.pending)
        with tqdm(total=len(self.readable), unit="img", desc=name, disable=not progress) as bar:
            try:
                for indices, columns, failures in results:
                    failed = [(self.readable[index], reason) for index, reason in failures]
                    writer.take([self.readable[index] for index in indices], columns, failed)
                    bar.update(len(indices) + len(failures))
                writer.finish_all()
            finally:
                writer.abandon()
        done = self.shards.done.values()
        rows, errors = sum(shard["rows"] for shard in done), sum(shard["errors"] for shard in done)
        return StreamResult(self.shards.folder, rows, errors, len(self.ranges), len(self.ranges) - len(self.pending))


class _ShardWriter:
    """Rows into the pending shards, in order: each shard is opened when its first row comes (or when a later
    shard's does, for a shard with no readable input), and committed with its failed inputs' rows when done."""

    def __init__(self, shards: ParquetShards, schema, entries: list[Entry], shard_size: int, pending: list[int]):
        self.shards, self.schema, self.entries, self.shard_size = shards, schema, entries, shard_size
        self.pending = list(reversed(pending))  # popped from the end: in order
        self.current: int | None = None
        self.file = self.temporary = None

    def take(self, positions: list[int], columns: dict, failed: list[tuple[int, str]]) -> None:
        """One batch: the task's `columns` for the readable inputs at `positions` (increasing), and the (position,
        reason) of those that failed to decode; together they may span shards, which are written in order."""
        batch = (
            self._batch([self.entries[p].path for p in positions], [None] * len(positions), columns)
            if positions
            else None
        )
        for shard in sorted({p // self.shard_size for p in positions} | {p // self.shard_size for p, _ in failed}):
            self._move_to(shard)
            self.failed += [(self.entries[p].path, reason) for p, reason in failed if p // self.shard_size == shard]
            inside = [i for i, p in enumerate(positions) if p // self.shard_size == shard]
            if inside:
                self.file.write_batch(batch.slice(inside[0], len(inside)))
                self.rows += len(inside)

    def finish_all(self) -> None:
        while self.pending:
            self._move_to(self.pending[-1])
        if self.current is not None:
            self._finish()

    def abandon(self) -> None:
        """After a failure or Ctrl-C: the shard being written is dropped (the next run writes it again)."""
        if self.file is not None:
            self.file.close()
            self.temporary.unlink(missing_ok=True)
            self.file = None

    def _move_to(self, shard: int) -> None:
        while self.current != shard:
            if self.current is not None:
                self._finish()
            self.current = self.pending.pop()
            self.file, self.temporary = self.shards.writer(self.current, self.schema)
            span = range(self.current * self.shard_size, min((self.current + 1) * self.shard_size, len(self.entries)))
            self.span, self.rows = span, 0
            self.failed = [(self.entries[p].path, self.entries[p].error) for p in span if self.entries[p].error]

    def _finish(self) -> None:
        if self.failed:
            paths, reasons = zip(*self.failed, strict=True)
            self.file.write_batch(self._batch(list(paths), list(reasons), None))
        self.file.close()
        self.file = None
        paths = [self.entries[position].path for position in self.span]
        self.shards.commit(self.current, self.temporary, paths, self.rows + len(self.failed), len(self.failed))
        self.current = None

    def _batch(self, paths: list[str], errors: list, columns: dict | None):
        pa = require("pyarrow", "parquet", "Parquet output")
        names = [name for name in self.schema.names if name not in ("path", "error")]
        arrays = [pa.array(paths, pa.string()), pa.array(errors, pa.string())]
        for name in names:
            arrays.append(pa.nulls(len(paths), self.schema.field(name).type) if columns is None else columns[name])
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)
