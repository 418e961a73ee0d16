"""The one-process engine: a batch job's images decoded in `workers` processes (a DataLoader) while the model runs
in this one; rows go to the current shard's file batch by batch (`job.Job`), so memory holds a few batches and the
list of paths, never the results.
"""

import torch

from ..choices import INFERENCE_BATCH_SIZE
from ..infer.batches import check_batch_size, inference_loader
from .inputs import Entry
from .job import SHARD_SIZE, Job, StreamResult


def stream(
    task,
    entries: list[Entry],
    out,
    *,
    shard_size: int = SHARD_SIZE,
    batch_size: int = INFERENCE_BATCH_SIZE,
    workers: int | None = None,
    progress: bool = False,
) -> StreamResult:
    """Run `task` (`tasks.PredictTask` or `tasks.EmbedTask`) on every entry in this process, writing one row per
    entry into the Parquet shards of `out`.

    Raises:
        ValueError: a bad setting, or `out` holds another job's output (see `ParquetShards`).
    """
    check_batch_size(batch_size)
    job = Job(task, entries, out, shard_size)
    loaded = task.loaded
    loader = inference_loader(loaded, job.files, batch_size, workers)

    def results():
        for images, indices, failures in loader:
            columns = task(images.to(loaded.device, memory_format=torch.channels_last)) if indices else {}
            yield indices, columns, failures

    return job.run(results(), task.name, progress)
