"""The `vggnet` command. Each verb parses its flags, calls one public Python function and prints the result.

    vggnet models
    vggnet summary vgg16 --input-size 224 --format json

Exit codes: 0 success, 1 a failure at run time, 2 a bad argument (the message names it and the fix).
"""

import argparse
import json
import logging
import sys

from . import __version__
from .analysis import FORMATS, describe_models, summarize
from .models.registry import list_models
from .models.vgg import HEADS
from .tables import render_table

EXAMPLES = """\
examples:
  vggnet models                          the variants with their size, cost and ImageNet accuracy
  vggnet summary vgg16                   shapes, parameters, MACs and receptive field of every layer
  vggnet summary vgg16 --format json     the same as JSON
  vggnet summary vgg11_bn --input-size 32 --head compact --num-classes 10

run 'vggnet COMMAND --help' for a command's options.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vggnet",
        description="Build, load, analyse and use VGG image classifiers.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vggnet {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_summary(commands)
    _add_models(commands)
    return parser


def _add_summary(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "summary",
        help="per-layer shapes, parameters, MACs, receptive field and stride of a model",
        description="Print a model layer by layer: canonical name, type, output shape, parameters, MACs, "
        "receptive field and effective stride, then the totals.",
        epilog="example: vggnet summary vgg16 --input-size 224 --format markdown",
    )
    parser.add_argument("model", metavar="MODEL", help=f"one of: {', '.join(list_models(include_aliases=True))}")
    parser.add_argument("--input-size", type=int, default=224, help="side of the square input (default: 224)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--num-classes", type=int, default=1000, help="classes of the head (default: 1000)")
    parser.add_argument("--in-chans", type=int, default=3, help="input channels (default: 3)")
    parser.add_argument("--head", choices=HEADS, default="classic", help="classifier head (default: classic)")
    parser.add_argument("--width-mult", type=float, default=1.0, help="channel multiplier (default: 1.0)")
    parser.set_defaults(run=_run_summary)


def _run_summary(args: argparse.Namespace) -> None:
    summary = summarize(
        args.model,
        args.input_size,
        num_classes=args.num_classes,
        in_chans=args.in_chans,
        head=args.head,
        width_mult=args.width_mult,
    )
    print(summary.render(args.format))


def _add_models(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "models",
        help="list the VGG variants with parameters, MACs and published ImageNet accuracy",
        description="List every registered variant with its aliases, parameters, GMACs (classic head, 1000 "
        "classes) and the published ImageNet-1K accuracy of its official weights.",
    )
    parser.add_argument("--input-size", type=int, default=224, help="input side for the MACs (default: 224)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.set_defaults(run=_run_models)


def _run_models(args: argparse.Namespace) -> None:
    rows = describe_models(args.input_size)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return
    headers = ["model", "aliases", "params", f"GMACs@{args.input_size}", "acc@1", "acc@5"]
    cells = [
        [
            row["model"],
            ", ".join(row["aliases"]) or "-",
            f"{row['params']:,}",
            f"{row['gmacs']:.3f}",
            "-" if row["acc1"] is None else f"{row['acc1']:.3f}",
            "-" if row["acc5"] is None else f"{row['acc5']:.3f}",
        ]
        for row in rows
    ]
    print(render_table(headers, cells, "markdown" if args.format == "markdown" else "text"))
    print("\naccuracy: ImageNet-1K validation, official weights (pretrained='imagenet'), as published by torchvision")


def main(argv: list[str] | None = None) -> int:
    """Run the `vggnet` command with `argv` (default: the process arguments) and return its exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except ValueError as error:
        print(f"vggnet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"vggnet {args.command}: failed: {error}", file=sys.stderr)
        return 1
    return 0
