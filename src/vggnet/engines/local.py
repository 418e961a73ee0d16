"""The one-process engine: a batch job over any number of images, streamed into Parquet shards, resumable.

    vggnet embed --model runs/train/exp/best.pt photos/ --out photos.parquet
    vggnet predict --model runs/train/exp/best.pt --list crawl.parquet --path-column url_path --out labels.parquet

Images are decoded in `workers` processes (a DataLoader) while the model runs; rows go to the current shard's file
batch by batch, so memory holds a few batches and the list of paths, never the results. Each shard is committed
when complete (`shards.ParquetShards`); a run that stops, by a crash or Ctrl-C, loses at most the shard it was
writing, and the same command run again skips the shards already written.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..choices import INFERENCE_BATCH_SIZE
from ..data import ImagePathDataset, collate_inference
from ..extras import require
from ..infer.source import LoadedModel, load_for_inference
from ..models.vgg import VGG
from .inputs import Entry, collect_inputs
from .shards import ParquetShards
from .tasks import EmbedTask, PredictTask

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


def stream_predict(
    model: str | Path | VGG | LoadedModel,
    inputs: list[str | Path],
    out: str | Path,
    *,
    lists: list[str | Path] = (),
    path_column: str = "path",
    topk: int = 5,
    pretrained: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    **options,
) -> StreamResult:
    """`predict` into Parquet shards: one row per input of `inputs` (files, folders, globs) and of the `lists`
    (see `inputs.collect_inputs`), with `top_class`, `top_index` and `top_prob`; `options` as `stream` takes them.

    >>> import vggnet
    >>> from PIL import Image
    >>> from vggnet.engines import stream_predict
    >>> Image.new("RGB", (64, 48), "tomato").save("tomato.png")
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> result = stream_predict(model, ["tomato.png", "gone.png"], "labels.parquet", topk=2, device="cpu")
    >>> result.rows, result.errors, result.shards
    (2, 1, 1)
    """
    loaded = load_for_inference(model, pretrained, device, precision)
    return stream(PredictTask(loaded, topk), collect_inputs(inputs, lists, path_column), out, **options)


def stream_embed(
    model: str | Path | VGG | LoadedModel,
    inputs: list[str | Path],
    out: str | Path,
    *,
    lists: list[str | Path] = (),
    path_column: str = "path",
    layer: str | None = None,
    normalize: bool = False,
    pretrained: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    **options,
) -> StreamResult:
    """`embed` into Parquet shards: one row per input with a fixed-size float32 `embedding` (`layer` and `dim` in
    the files' metadata); inputs and `options` as `stream_predict` takes them."""
    loaded = load_for_inference(model, pretrained, device, precision)
    task = EmbedTask(loaded, layer, normalize)
    return stream(task, collect_inputs(inputs, lists, path_column), out, **options)


def stream(
    task,
    entries: list[Entry],
    out: str | Path,
    *,
    shard_size: int = SHARD_SIZE,
    batch_size: int = INFERENCE_BATCH_SIZE,
    workers: int = 0,
    progress: bool = False,
) -> StreamResult:
    """Run `task` (`tasks.PredictTask` or `tasks.EmbedTask`) on every entry, writing one row per entry into the
    Parquet shards of `out`.

    Raises:
        ValueError: a bad setting, or `out` holds another job's output (see `ParquetShards`).
    """
    for flag, value in (("--shard-size", shard_size), ("--batch-size", batch_size)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    pa = require("pyarrow", "parquet", "Parquet output")
    loaded = task.loaded
    job = {"task": task.name, "model": loaded.source, "precision": loaded.precision, **task.settings(),
           "inputs": len(entries), "shard_size": shard_size}  # fmt: skip
    shards = ParquetShards(out, job)
    schema = pa.schema(
        [("path", pa.string()), ("error", pa.string()), *task.columns().items()],
        metadata={"vggnet": json.dumps(task.metadata())},
    )
    ranges = [range(start, min(start + shard_size, len(entries))) for start in range(0, len(entries), shard_size)]
    pending = [
        index for index, span in enumerate(ranges)
        if not shards.is_done(index, [entries[position].path for position in span])
    ]  # fmt: skip
    readable = [position for index in pending for position in ranges[index] if entries[position].error is None]
    dataset = ImagePathDataset([entries[p].file for p in readable], loaded.preprocess.transform(),
                               loaded.preprocess.decode_size)  # fmt: skip
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_inference)
    writer = _ShardWriter(shards, schema, entries, shard_size, pending)
    with tqdm(total=len(readable), unit="img", desc=task.name, disable=not progress) as bar:
        try:
            for images, indices, failures in loader:
                columns = task(images.to(loaded.device, memory_format=torch.channels_last)) if indices else {}
                failed = [(readable[index], reason) for index, reason in failures]
                writer.take([readable[i] for i in indices], columns, failed)
                bar.update(len(indices) + len(failures))
            writer.finish_all()
        finally:
            writer.abandon()
    rows = sum(shard["rows"] for shard in shards.done.values())
    errors = sum(shard["errors"] for shard in shards.done.values())
    return StreamResult(shards.folder, rows, errors, len(ranges), len(ranges) - len(pending))


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
            kind = self.schema.field(name).type
            if columns is None:
                arrays.append(pa.nulls(len(paths), kind))
            else:
                value = columns[name]
                arrays.append(value if isinstance(value, pa.Array) else pa.array(value, kind))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)
