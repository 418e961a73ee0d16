"""Training's check of its images, shared by the processes under torchrun.

Each process takes every world_size-th file (from its rank on), looks it up in the index of earlier verdicts and
decodes it only when the index has no record of it at its current size and modification time; the records are
gathered to every process, so that all of them skip the same unreadable files and so split the same data, and the
main process writes the index. Each file is checked by exactly one process. Shares are taken by position rather
than from the files that need decoding, so that the processes need not agree on what the index held (another run
on the same data may rewrite it while they read it): the records each process gathers are its own.
"""

import logging
import os
from pathlib import Path

from ..data.decode import ImageCheck, UnreadableImageError, read_index, unreadable_errors, write_index
from .distributed import Distributed

logger = logging.getLogger("vggnet")

# A check that decodes at least this many images on the main process takes long enough to announce; a smaller one
# takes seconds and passes silently.
ANNOUNCE_AT = 1_000


def check_data(paths: list[Path], index: Path, distributed: Distributed) -> list[UnreadableImageError]:
    """The unreadable files among `paths`, the same on every process, each checked by one process only; `index`
    records the verdicts (see `ImageCheck`), so that a later run decodes only the files that are new or changed.
    The main process announces a long check and shows its progress on a terminal.

    Args:
        distributed: The processes that share the check (anything with `rank`, `world_size`, `is_main`,
            `local_world_size`, and `Distributed`'s `gather` and `share`).
    """
    rank, world_size = distributed.rank, distributed.world_size
    share = ImageCheck(paths[rank::world_size], read_index(index))
    if distributed.is_main and share.pending >= ANNOUNCE_AT:
        shared = f" (this process's share; each of the {world_size} processes checks its own)"
        logger.info(
            "checking %d images new or changed since the last check%s", share.pending, shared if world_size > 1 else ""
        )
    # The machine's cores are shared by its processes; PIL releases the GIL while decoding.
    workers = max(1, (os.cpu_count() or 1) // distributed.local_world_size)
    records: list[list | None] = [None] * len(paths)
    for owner, part in enumerate(distributed.gather(share.run(workers, progress=distributed.is_main), patient=True)):
        records[owner::world_size] = part
    # The others wait while the main process writes (patiently: the index grows with the data), and a failed write
    # (a full disk) fails every process rather than leaving them waiting.
    distributed.share(lambda: write_index(index, paths, records), patient=True)
    return unreadable_errors(paths, records)
