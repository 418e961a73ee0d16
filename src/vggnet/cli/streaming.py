"""What `predict` and `embed` share for jobs of any size: inputs from lists and tables, and `--out DIR.parquet`,
which streams the rows into resumable Parquet shards (`vggnet.engines`).

    vggnet embed --model runs/train/exp/best.pt --list paths.txt --out photos.parquet
    vggnet predict --model runs/train/exp/best.pt --list table.parquet --path-column file --out labels.parquet
    vggnet embed --model runs/train/exp/best.pt --list paths.txt --out photos.parquet --engine ray --num-workers 2
"""

import argparse
import sys

from ..choices import ENGINES
from .parser import at_least


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """PATH... and --list, --path-column, --image-root and --shard-size; the engine of --out DIR.parquet and its
    settings."""
    parser.add_argument("paths", nargs="*", metavar="PATH", help="image files, folders or glob patterns")
    parser.add_argument(
        "--list", action="append", default=[], metavar="FILE", dest="lists",
        help="more inputs: a .txt file of paths (one per line), or a .csv or .parquet table with a path column; "
        "relative paths are relative to the list's folder (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--path-column", help="the path column of a --list table (default: path, or filename in a table without path)"
    )
    parser.add_argument(
        "--image-root", metavar="DIR",
        help="the folder that a --list's relative paths are relative to (default: the list's folder, or the images/ "
        "beside it)",
    )  # fmt: skip
    parser.add_argument(
        "--shard-size", type=at_least(1), default=10_000, help="inputs per Parquet shard of --out DIR.parquet (10000)"
    )
    engine = parser.add_argument_group("engine of --out DIR.parquet")
    engine.add_argument(
        "--engine", choices=ENGINES, default="local",
        help="local: this process, decoding in --workers processes; ray: a Ray Data pipeline on a local or "
        "running Ray cluster (pip install 'vggnet[ray]') (local)",
    )  # fmt: skip
    engine.add_argument("--num-workers", type=at_least(1), default=1, metavar="N", help="ray: model actors (1)")
    engine.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="CPUS", help="ray: CPUs per actor (1)")
    engine.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="GPUS", help="ray: GPUs per actor (0)")
    engine.add_argument(
        "--address", help="ray: the cluster to join, auto (the one running on this machine) or ray://HOST:10001 "
        "(default: start a local one)",
    )  # fmt: skip


def inputs_of(args: argparse.Namespace) -> list[str]:
    """The inputs for a verb that holds its results in memory: PATH... and the files the lists name.

    Raises:
        ValueError: no PATH and no --list.
    """
    _require_inputs(args)
    if args.engine != "local":
        raise ValueError(f"--engine {args.engine} writes Parquet shards: add --out DIR.parquet")
    if not args.lists:
        return args.paths
    from ..engines.inputs import collect_inputs

    return [entry.file for entry in collect_inputs(args.paths, args.lists, args.path_column, args.image_root)]


def streams(args: argparse.Namespace) -> bool:
    """Whether `--out` names a Parquet folder (then the rows are streamed there, not held in memory)."""
    return args.out is not None and str(args.out).rstrip("/").endswith(".parquet")


def run_stream(args: argparse.Namespace, options: dict, **task_options) -> int:
    """Stream `args.command`'s rows into `args.out`; report what was written. Exit code 1 when any input failed."""
    from ..engines import verbs

    _require_inputs(args)
    run = verbs.stream_predict if args.command == "predict" else verbs.stream_embed
    if args.engine == "ray":
        engine_options = {"num_workers": args.num_workers, "cpus_per_worker": args.cpus_per_worker,
                          "gpus_per_worker": args.gpus_per_worker, "address": args.address}  # fmt: skip
    else:
        engine_options = {"workers": options["workers"]}
    result = run(
        args.model, args.paths, args.out, lists=args.lists, path_column=args.path_column, image_root=args.image_root,
        pretrained=options["pretrained"], device=options["device"], precision=options["precision"],
        batch_size=options["batch_size"], shard_size=args.shard_size, progress=sys.stderr.isatty(),
        engine=args.engine, **engine_options, **task_options,
    )  # fmt: skip
    resumed = f", {result.skipped} of them written by an earlier run" if result.skipped else ""
    print(f"{result.rows} rows ({result.errors} failed) in {result.shards} shard(s){resumed} -> {result.out}")
    return 1 if result.errors else 0


def _require_inputs(args: argparse.Namespace) -> None:
    if not args.paths and not args.lists:
        raise ValueError("no inputs: pass image files, folders or globs, or --list FILE")
