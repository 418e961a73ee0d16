"""A job's output folder (`--out DIR.parquet`): Parquet shards written atomically, and a record of the done ones.

Shard `i` holds the rows of inputs `i * shard_size` to `(i + 1) * shard_size - 1` (in input order), as
`part-00000i.parquet`. A shard is written to a hidden temporary file and renamed into place when complete, then
recorded in `_vggnet.json` with its row count and its first and last input: the same command run again after a crash
or Ctrl-C skips the recorded shards and redoes the rest, so the folder ends with every row exactly once. Readers
(`pyarrow.parquet.read_table(DIR)`, pandas, Spark, DuckDB) skip the `_` and `.` names.
"""

import hashlib
import json
from pathlib import Path

from ..atomic import atomic_write_text, commit, temporary_path
from ..extras import require
from ..outputs import output_folder

RECORD = "_vggnet.json"


class ParquetShards:
    """The shards of one job in `folder`.

    Args:
        folder: The output folder, named `*.parquet`; made if missing.
        job: What the job is (task, model, settings, number of inputs, shard size): a folder that holds another
            job's shards is never mixed with this one's.

    Raises:
        ValueError: `folder` is not named `.parquet`, cannot be written (see `vggnet.outputs.output_folder`), or
            holds the output of another job.
    """

    def __init__(self, folder: str | Path, job: dict) -> None:
        if Path(folder).suffix != ".parquet":
            raise ValueError(f"--out {folder} must name a folder ending in .parquet (it receives the shards)")
        self.folder = output_folder(folder, "--out")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.job = job
        record = self.folder / RECORD
        if record.is_file():
            saved = json.loads(record.read_text(encoding="utf-8"))
            if saved.get("job") != job:
                raise ValueError(
                    f"--out {self.folder} holds the output of another job ({_difference(saved.get('job'), job)}); "
                    "pass a new --out, or remove the folder to start again"
                )
            self.done = {int(index): shard for index, shard in saved["shards"].items()}
        elif any(self.folder.iterdir()):
            raise ValueError(f"--out {self.folder} is a folder with other files in it; pass a new --out")
        else:
            self.done = {}
            self._save()

    def is_done(self, index: int, paths: list[str]) -> bool:
        """Whether shard `index` was written, for exactly the inputs `paths`.

        Raises:
            ValueError: it was written for other inputs (files were added, removed or renamed since).
        """
        shard = self.done.get(index)
        if shard is None or not (self.folder / shard["file"]).is_file():
            return False
        if shard["inputs"] != _digest(paths):
            raise ValueError(
                f"--out {self.folder}: shard {index} was written for other inputs than the {len(paths)} from "
                f"{paths[0]} to {paths[-1]}: the inputs changed since; pass a new --out"
            )
        return True

    def writer(self, index: int, schema):
        """A Parquet writer for shard `index`, writing to a temporary file until `commit`."""
        parquet = require("pyarrow.parquet", "parquet", "Parquet output")
        path = temporary_path(self.folder / _name(index))
        return parquet.ParquetWriter(path, schema), path

    def commit(self, index: int, temporary: Path, paths: list[str], rows: int, errors: int) -> None:
        """Rename the complete shard into place and record it: `rows` rows for the inputs `paths` (recorded by a
        digest), of which `errors` failed."""
        commit(temporary, self.folder / _name(index))
        self.done[index] = {"file": _name(index), "rows": rows, "errors": errors, "inputs": _digest(paths)}
        self._save()

    def _save(self) -> None:
        shards = {str(index): self.done[index] for index in sorted(self.done)}
        atomic_write_text(self.folder / RECORD, json.dumps({"job": self.job, "shards": shards}, indent=1))


def _digest(paths: list[str]) -> str:
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()[:24]


def _name(index: int) -> str:
    return f"part-{index:06d}.parquet"


def _difference(saved: dict | None, job: dict) -> str:
    if not isinstance(saved, dict):
        return "an unreadable record"
    changed = [key for key in sorted(set(saved) | set(job)) if saved.get(key) != job.get(key)]
    return ", ".join(f"{key} {saved.get(key)!r} there, {job.get(key)!r} now" for key in changed)
