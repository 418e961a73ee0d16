"""Batch jobs over any number of images: their inputs (files, folders, globs, lists and tables of paths), their
tasks (predict, embed), their resumable Parquet output, and the engines that run them: one process (`local`) or a
Ray Data pipeline on one machine or a cluster (`ray_data`).

    vggnet embed --model runs/train/exp/best.pt photos/ --out photos.parquet [--engine ray]

- `verbs`: `stream_predict`, `stream_embed` (and `run`, a `TaskSpec` by an engine)
- `inputs`: `collect_inputs`, the entries of a job; `tasks`: `PredictTask`, `EmbedTask`, `TaskSpec`
- `job`: `Job`, the shards still to write and the writing of them; `shards`: `ParquetShards`, the output folder,
  written atomically shard by shard and resumable
- `local`: `stream`, the one-process engine; `ray_data`: `stream_on_ray`, the Ray engine

Parquet needs pyarrow: `pip install 'vggnet[parquet]'`; the Ray engine, `pip install 'vggnet[ray]'`.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {
    ".inputs": ["Entry", "collect_inputs"],
    ".job": ["Job", "StreamResult"],
    ".local": ["stream"],
    ".ray_data": ["stream_on_ray"],
    ".shards": ["ParquetShards"],
    ".tasks": ["EmbedTask", "PredictTask", "TaskSpec"],
    ".verbs": ["stream_embed", "stream_predict"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time `__getattr__` imports each name on first use
    from .inputs import Entry, collect_inputs
    from .job import Job, StreamResult
    from .local import stream
    from .ray_data import stream_on_ray
    from .shards import ParquetShards
    from .tasks import EmbedTask, PredictTask, TaskSpec
    from .verbs import stream_embed, stream_predict
