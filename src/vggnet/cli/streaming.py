"""What `predict` and `embed` share for jobs of any size: inputs from lists and tables, and `--out DIR.parquet`,
which streams the rows into resumable Parquet shards (`vggnet.engines`).

    vggnet embed --model runs/train/exp/best.pt --list paths.txt --out photos.parquet
    vggnet predict --model runs/train/exp/best.pt --list table.parquet --path-column file --out labels.parquet
"""

import argparse
import sys


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """PATH... and --list, --path-column and --shard-size."""
    parser.add_argument("paths", nargs="*", metavar="PATH", help="image files, folders or glob patterns")
    parser.add_argument(
        "--list", action="append", default=[], metavar="FILE", dest="lists",
        help="more inputs: a .txt file of paths (one per line), or a .csv or .parquet table with a path column; "
        "relative paths are relative to the list's folder (repeatable)",
    )  # fmt: skip
    parser.add_argument("--path-column", default="path", help="the path column of a --list table (path)")
    parser.add_argument(
        "--shard-size", type=int, default=10_000, help="inputs per Parquet shard of --out DIR.parquet (10000)"
    )


def inputs_of(args: argparse.Namespace) -> list[str]:
    """The inputs for a verb that holds its results in memory: PATH... and the files the lists name.

    Raises:
        ValueError: no PATH and no --list.
    """
    _require_inputs(args)
    if not args.lists:
        return args.paths
    from ..engines.inputs import collect_inputs

    return [entry.file for entry in collect_inputs(args.paths, args.lists, args.path_column)]


def streams(args: argparse.Namespace) -> bool:
    """Whether `--out` names a Parquet folder (then the rows are streamed there, not held in memory)."""
    return args.out is not None and str(args.out).rstrip("/").endswith(".parquet")


def run_stream(args: argparse.Namespace, options: dict, **task_options) -> int:
    """Stream `args.command`'s rows into `args.out`; report what was written. Exit code 1 when any input failed."""
    from ..engines import local

    _require_inputs(args)
    run = local.stream_predict if args.command == "predict" else local.stream_embed
    result = run(
        args.model, args.paths, args.out, lists=args.lists, path_column=args.path_column,
        pretrained=options["pretrained"], device=options["device"], precision=options["precision"],
        batch_size=options["batch_size"], workers=options["workers"], shard_size=args.shard_size,
        progress=sys.stderr.isatty(), **task_options,
    )  # fmt: skip
    resumed = f", {result.skipped} of them written by an earlier run" if result.skipped else ""
    print(f"{result.rows} rows ({result.errors} failed) in {result.shards} shard(s){resumed} -> {result.out}")
    return 1 if result.errors else 0


def _require_inputs(args: argparse.Namespace) -> None:
    if not args.paths and not args.lists:
        raise ValueError("no inputs: pass image files, folders or globs, or --list FILE")
