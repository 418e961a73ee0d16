"""The run folder: `runs/train/<name>`, auto-numbered so that no earlier run is ever overwritten, and its
`metrics.csv` and `config.yaml`."""

import csv
import io
from pathlib import Path

import yaml

from ..atomic import atomic_write_text

METRIC_COLUMNS = [
    "epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "seconds", "images_per_s"
]  # fmt: skip


def new_run_dir(out: str | Path, name: str) -> Path:
    """Create and return `out/name`, or `out/name2`, `out/name3`, ... if taken (the first free one)."""
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for number in range(1, 100_000):
        candidate = out / (name if number == 1 else f"{name}{number}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"{out} holds too many runs named {name!r}; pick another --name")


def write_metrics_csv(rows: list[dict], path: Path) -> None:
    """Rewrite `metrics.csv` from all rows (one per epoch); atomic, so it never holds torn or duplicated rows."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _format(row[key]) for key in METRIC_COLUMNS})
    atomic_write_text(path, buffer.getvalue())


def write_config_yaml(config: dict, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))


def _format(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
