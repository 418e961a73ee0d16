"""Batch jobs over any number of images: the one-process streaming engine (`local`), its inputs (files, folders,
globs, lists and tables of paths), its tasks (predict, embed) and its resumable Parquet output.

    vggnet embed --model runs/train/exp/best.pt photos/ --out photos.parquet

- `inputs`: `collect_inputs`, the entries of a job; `tasks`: `PredictTask`, `EmbedTask`
- `shards`: `ParquetShards`, the output folder, written atomically shard by shard and resumable
- `local`: `stream`, `stream_predict`, `stream_embed`

Parquet needs pyarrow: `pip install 'vggnet[parquet]'`.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {
    ".inputs": ["Entry", "collect_inputs"],
    ".local": ["StreamResult", "stream", "stream_embed", "stream_predict"],
    ".shards": ["ParquetShards"],
    ".tasks": ["EmbedTask", "PredictTask"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time `__getattr__` imports each name on first use
    from .inputs import Entry, collect_inputs
    from .local import StreamResult, stream, stream_embed, stream_predict
    from .shards import ParquetShards
    from .tasks import EmbedTask, PredictTask
