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
from .data.digits import write_digits
from .data.transforms import AUGMENTS
from .models.registry import list_models
from .models.vgg import HEADS
from .runtime import DEVICES, PRECISIONS
from .tables import render_table
from .train.config import OPTIMIZERS, SCHEDULERS
from .train.loop import TrainingInterrupted, train

EXAMPLES = """\
examples:
  vggnet train                           train on the built-in digits (about two minutes on a CPU)
  vggnet train --data DIR --model vgg16_bn --pretrained imagenet --epochs 20
  vggnet train --resume runs/train/exp/last.pt
  vggnet data digits --out data/digits   write the built-in dataset as an image folder
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
    _add_train(commands)
    _add_data(commands)
    _add_summary(commands)
    _add_models(commands)
    return parser


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train or fine-tune a VGG on an image folder (default: the built-in digits)",
        description="Train or fine-tune a VGG. DIR holds train/<class>/ and val/<class>/ folders (or valid/, "
        "validation/), or class folders directly, split by --val-split. Without --data, trains on the built-in "
        "digits with settings that finish in about two minutes on a CPU. Writes runs/train/<name>/: config.yaml, "
        "metrics.csv, best.pt, last.pt, results.png, confusion_matrix.png.",
        epilog="examples:\n  vggnet train\n  vggnet train --data ~/flowers --model vgg16_bn --pretrained imagenet "
        "--freeze-features --epochs 10\n  vggnet train --config my.yaml --lr 0.003\n"
        "  vggnet train --resume runs/train/exp/last.pt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # only the flags given override the defaults and --config
    )
    add = parser.add_argument
    add("--data", metavar="DIR", help="image folder (default: the built-in digits)")
    add("--val-split", type=float, metavar="F", help="fraction held out per class when DIR has no val/ (0.2)")
    add("--model", metavar="NAME", help=f"one of: {', '.join(list_models(include_aliases=True))} (vgg16_bn)")
    add("--pretrained", metavar="imagenet|PATH", help="start from these weights (default: random initialisation)")
    add("--head", choices=HEADS, help="classifier head (classic)")
    add("--dropout", type=float, help="dropout in the head (0.5)")
    add("--width-mult", type=float, help="multiplies every convolution's channels (1.0)")
    add("--freeze-features", action="store_true", help="train the head only")
    add("--epochs", type=int, help="epochs (30)")
    add("--batch-size", type=int, help="images per step (32)")
    add("--lr", type=float, help="peak learning rate (sgd 0.01, adamw 0.001)")
    add("--opt", choices=OPTIMIZERS, help="optimizer (sgd, momentum 0.9)")
    add("--momentum", type=float, help="SGD momentum (0.9)")
    add("--weight-decay", type=float, help="weight decay on weights, not biases or norms (sgd 5e-4, adamw 0.05)")
    add("--sched", choices=SCHEDULERS, help="learning-rate schedule after warm-up (cosine)")
    add("--warmup-epochs", type=int, help="epochs of linear warm-up (1)")
    add("--label-smoothing", type=float, help="label smoothing (0)")
    add("--img-size", type=int, help="square input side (224)")
    add("--crop-pct", type=float, help="evaluation centre crop as a fraction of the resized image (0.875)")
    add("--augment", choices=AUGMENTS, help="training augmentation (basic)")
    add("--precision", choices=PRECISIONS, help="auto: bf16 where the hardware runs it natively, else fp32")
    add("--workers", type=int, help="data-loading processes (one per spare core, at most 8)")
    add("--seed", type=int, help="random seed (0)")
    add("--deterministic", action="store_true", help="use deterministic algorithms (slower)")
    add("--patience", type=int, help="stop after this many epochs without a better val top-1 (0: never)")
    add("--device", choices=DEVICES, help="auto: CUDA when available")
    add("--config", metavar="FILE.yaml", help="settings file; flags override it")
    add("--out", metavar="DIR", help="runs folder (runs/train)")
    add("--name", help="run name; numbered when taken (exp, exp2, ...)")
    add("--tensorboard", action="store_true", help="also write TensorBoard event files")
    add("--strict", action="store_true", help="refuse unreadable images before training instead of skipping them")
    add("--resume", metavar="last.pt", help="continue a run from its last.pt")
    parser.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    settings = {key: value for key, value in vars(args).items() if key not in ("run", "command")}
    try:
        train(resume=settings.pop("resume", None), config_file=settings.pop("config", None), **settings)
    except TrainingInterrupted as interrupted:
        raise SystemExit(130) from interrupted


def _add_data(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "data",
        help="write a built-in dataset as an image folder",
        description="Write scikit-learn's 1,797 8x8 handwritten digits as PNG files in train/<digit>/ and "
        "val/<digit>/ folders (a fixed stratified 80/20 split): what `vggnet train` uses without --data.",
    )
    parser.add_argument("dataset", choices=["digits"], help="the dataset")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to create (must not exist or be empty)")
    parser.set_defaults(run=_run_data)


def _run_data(args: argparse.Namespace) -> None:
    out = write_digits(args.out)
    print(f"digits dataset in {out}: train/ 1437 images, val/ 360 images, 10 classes")


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
