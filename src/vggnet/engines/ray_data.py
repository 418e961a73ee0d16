"""The Ray engine (`--engine ray`): a batch job as a Ray Data pipeline, on this machine or on a cluster.

    vggnet embed --model best.pt --list paths.txt --out photos.parquet --engine ray                  # local cluster
    vggnet embed --model best.pt --list paths.txt --out photos.parquet --engine ray --address auto   # a running one

The inputs to compute (`Job.files`) become blocks of `BLOCK_BATCHES` batches; Ray tasks decode and preprocess them
(exactly as the one-process engine's loader does), an actor pool runs the model (loaded once per actor,
`num_workers` actors of `cpus_per_worker` CPUs and `gpus_per_worker` GPUs), and the rows come back to this process
in input order, which writes them into the same Parquet shards as the one-process engine (`job.Job`): the same
schema, the same resumability, and a job may be resumed by either engine. A worker that dies is restarted by Ray
and its blocks are computed again; a block's rows reach the writer once, so the output is complete with no
duplicates. On a cluster, the model (a checkpoint path) and the images must be readable by every node at the same
paths: a shared file system.
"""

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..choices import INFERENCE_BATCH_SIZE
from ..data import ImagePathDataset
from ..data.preprocess import Preprocess
from ..extras import require
from ..infer.batches import check_batch_size
from ..infer.source import model_source
from ..models.loading import weights_keyword
from .inputs import Entry
from .job import SHARD_SIZE, Job, StreamResult
from .tasks import TaskSpec

# Batches per block: a block is what one decoding task reads, and what Ray computes again after a failure.
BLOCK_BATCHES = 4
# CPUs a decoding task asks for: a fraction, so that decoding runs beside the actors on a machine of a few cores.
DECODE_CPUS = 0.5


def stream_on_ray(
    spec: TaskSpec,
    entries: list[Entry],
    out,
    *,
    device: str = "auto",
    num_workers: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    address: str | None = None,
    shard_size: int = SHARD_SIZE,
    batch_size: int = INFERENCE_BATCH_SIZE,
    progress: bool = False,
) -> StreamResult:
    """Run the task `spec` on every entry through Ray Data, writing one row per entry into the Parquet shards of
    `out`; joins the cluster at `address` (`auto`: the one running here; `ray://host:10001`: a remote one), or
    starts a local one, unless this process is connected to one already.

    Raises:
        ValueError: a bad setting, or `out` holds another job's output.
        MissingExtra: Ray is not installed.
    """
    worker_device = _worker_device(device, gpus_per_worker)
    check_batch_size(batch_size)
    if num_workers < 1:
        raise ValueError(f"--num-workers must be at least 1, got {num_workers}")
    if cpus_per_worker <= 0:
        raise ValueError(f"--cpus-per-worker must be more than 0, got {cpus_per_worker}")
    ray = require("ray", "ray", "--engine ray")
    ray_data = require("ray.data", "ray", "--engine ray")
    pa = require("pyarrow", "parquet", "Parquet output")
    task = spec.build("cpu")  # here, for the output's schema and the job's record; each actor builds its own
    job = Job(task, entries, out, shard_size, precision=spec.precision if worker_device == "cuda" else None)
    files = [os.path.abspath(file) for file in job.files]  # the workers' working folder is not this one
    if not files:
        return job.run([], task.name, progress)
    if not ray.is_initialized():
        ray.init(address=address)
    context = ray_data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows in input order: shard after shard
    context.enable_progress_bars = False  # the job's own bar counts images
    block = batch_size * BLOCK_BATCHES
    blocks = [
        pa.table({"index": pa.array(range(start, min(start + block, len(files))), pa.int64()),
                  "file": pa.array(files[start : start + block], pa.string())})
        for start in range(0, len(files), block)
    ]  # fmt: skip
    dataset = ray_data.from_arrow(blocks).map_batches(
        _decode,
        fn_kwargs={"preprocess": task.loaded.preprocess},
        batch_size=batch_size,
        batch_format="pyarrow",
        num_cpus=DECODE_CPUS,
    )
    dataset = dataset.map_batches(
        _Inference,
        fn_constructor_kwargs={"spec": _portable(spec), "device": worker_device, "threads": round(cpus_per_worker)},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray_data.ActorPoolStrategy(size=num_workers),
        num_cpus=cpus_per_worker,
        num_gpus=gpus_per_worker or None,
    )
    names = list(task.columns())

    def results():
        for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            failed = table.filter(table["error"].is_valid())
            computed = table.filter(table["error"].is_null())
            columns = {name: computed[name].combine_chunks() for name in names}
            failures = list(zip(failed["index"].to_pylist(), failed["error"].to_pylist(), strict=True))
            yield computed["index"].to_pylist(), columns, failures

    return job.run(results(), task.name, progress)


def _portable(spec: TaskSpec) -> TaskSpec:
    """`spec` with its model and weights files named by absolute path, since the workers' working folder may not be
    this one (names, "imagenet" and models in memory stay as they are)."""
    model, pretrained = spec.model, spec.pretrained
    if isinstance(model, str | Path):
        named = model_source(model)
        model = named.resolve() if isinstance(named, Path) else named
    if pretrained is not None:
        file = weights_keyword(pretrained).get("checkpoint_path")
        pretrained = Path(file).resolve() if file is not None else pretrained
    return replace(spec, model=model, pretrained=pretrained)


def _worker_device(device: str, gpus_per_worker: float) -> str:
    """Where the actors run the model: on their GPU when they are given one (Ray hides the GPUs from the rest)."""
    if gpus_per_worker < 0:
        raise ValueError(f"--gpus-per-worker must be 0 or more, got {gpus_per_worker}")
    if device == "cuda" and not gpus_per_worker:
        raise ValueError("--device cuda with --engine ray needs GPUs for the workers: add --gpus-per-worker 1")
    if device == "cpu" and gpus_per_worker:
        raise ValueError(f"--gpus-per-worker {gpus_per_worker} reserves GPUs --device cpu would not use: drop one")
    return "cuda" if gpus_per_worker else "cpu"


def _decode(batch, preprocess: Preprocess) -> dict:
    """A Ray task: the batch's files decoded and preprocessed as `ImagePathDataset` does (zeros for a file that
    cannot be decoded, whose `error` says why; an empty `error` for the others, since a column of optional strings
    does not survive the trip through NumPy)."""
    files = batch["file"].to_pylist()
    dataset = ImagePathDataset(files, preprocess.transform(), preprocess.decode_size)
    size = preprocess.img_size
    images = np.zeros((len(files), 3, size, size), np.float32)
    errors = []
    for position in range(len(files)):
        image, _, reason = dataset[position]
        if image is not None:
            images[position] = image.numpy()
        errors.append(reason or "")
    return {"index": batch["index"].to_numpy(), "error": np.array(errors, dtype=str), "image": images}


class _Inference:
    """A Ray actor: the task built once (its model loaded on `device`), then run on each decoded batch; rows of
    undecodable files pass through with their error and null columns."""

    def __init__(self, spec: TaskSpec, device: str, threads: int) -> None:
        torch.set_num_threads(max(1, threads))  # a fraction of a CPU still runs one thread
        self.task = spec.build(device)
        self.device = self.task.loaded.device
        pa = require("pyarrow", "parquet", "Parquet output")
        self.schema = pa.schema([("index", pa.int64()), ("error", pa.string()), *self.task.columns().items()])

    def __call__(self, batch: dict):
        pa = require("pyarrow", "parquet", "Parquet output")
        errors = [str(error) for error in batch["error"]]
        computed = np.array([not error for error in errors])
        names = self.schema.names[2:]
        parts = []
        if computed.any():
            images = torch.from_numpy(batch["image"][computed]).to(self.device, memory_format=torch.channels_last)
            columns = self.task(images)
            arrays = [pa.array(batch["index"][computed], pa.int64()), pa.nulls(int(computed.sum()), pa.string())]
            parts.append(pa.Table.from_arrays([*arrays, *(columns[name] for name in names)], schema=self.schema))
        if not computed.all():
            reasons = [error for error in errors if error]
            arrays = [pa.array(batch["index"][~computed], pa.int64()), pa.array(reasons, pa.string())]
            nulls = [pa.nulls(len(reasons), self.schema.field(name).type) for name in names]
            parts.append(pa.Table.from_arrays([*arrays, *nulls], schema=self.schema))
        return pa.concat_tables(parts)
