"""The verbs that make a model: `vggnet train` (one process, or several through torchrun) and `vggnet data`.

    vggnet train --data DIR --model vgg16_bn --pretrained imagenet --epochs 20 --nproc 2
    vggnet train --data labels.parquet --path-column file --split-column split
    vggnet data digits --out data/digits

`train`'s settings flags are made from `TrainConfig`'s fields, help text included, so that `--help`,
`config.yaml` and validation can never disagree.
"""

import argparse
import sys
from dataclasses import fields

from ..training.config import TrainConfig, flag, setting_type, shown_default

# The settings that say how to read a --data table, which `vggnet eval` takes too.
TABLE_SETTINGS = ("path_column", "label_column", "split_column", "image_root")


def add_train(commands: argparse._SubParsersAction) -> None:
    """Add `vggnet train`: a flag for each setting, `--config`, `--resume` and `--nproc`."""
    parser = commands.add_parser(
        "train",
        help="train or fine-tune a VGG on an image folder or table (default: the built-in digits)",
        description="Train or fine-tune a VGG. DIR holds train/<class>/ and val/<class>/ folders (or valid/, "
        "validation/), or class folders directly, split by --val-split. TABLE is a .csv or .parquet file of image "
        "paths and labels, split by --split-column or --val-split; a folder of train.csv and val.csv (mini-ImageNet's "
        "layout, images in images/) works too. Without --data, trains a small VGG on the "
        "built-in digits, with settings sized for a CPU: where an option below shows two defaults, the second is "
        "the one used without --data. Writes runs/train/<name>/: config.yaml, metrics.csv, best.pt, last.pt, "
        "results.png, confusion_matrix.png.",
        epilog="examples:\n  vggnet train\n  vggnet train --data ~/flowers --model vgg16_bn --pretrained imagenet "
        "--freeze-features --epochs 10\n  vggnet train --config my.yaml --lr 0.003\n"
        "  vggnet train --data mini-imagenet/ --model vgg11_bn --img-size 84\n"
        "  vggnet train --resume runs/train/exp/last.pt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # only the flags given override the defaults and --config
    )
    add_settings(parser)
    parser.add_argument("--config", metavar="FILE.yaml", help="settings file; flags override it")
    parser.add_argument("--resume", metavar="last.pt", help="continue a run from its last.pt")
    parser.add_argument(
        "--nproc", type=int, metavar="N", help="run N processes on this machine (DDP), as torchrun --standalone would"
    )
    parser.set_defaults(run=_run_train)


def add_settings(parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None) -> None:
    """A flag for each `TrainConfig` field (or those of `names`), with the type, choices, metavar, help and
    default(s) the field gives. The flags have no default of their own: one not given is absent (or None)."""
    for setting in fields(TrainConfig):
        if names is not None and setting.name not in names:
            continue
        kind = setting_type(setting)[0]
        options = {key: setting.metadata[key] for key in ("choices", "metavar") if key in setting.metadata}
        if kind is bool:
            options["action"] = "store_true"
        elif kind is not str:
            options["type"] = kind
        shown = shown_default(setting.name)
        help = setting.metadata["help"] + (f" ({shown})" if shown else "")
        parser.add_argument(flag(setting.name), help=help, **options)


def _run_train(args: argparse.Namespace) -> int | None:
    if getattr(args, "nproc", 1) > 1:
        from ..training.launcher import launch_processes

        command = [sys.executable, "-m", "vggnet", *_without_nproc(args.argv)]
        print(f"running {args.nproc} processes (as torchrun --standalone --nproc-per-node {args.nproc} would): "
              + " ".join(["vggnet", *command[3:]]), file=sys.stderr)  # fmt: skip
        return launch_processes(args.nproc, command)
    from ..training import TrainingInterrupted, train
    from ..training.signals import INTERRUPTED

    settings = {key: value for key, value in vars(args).items() if key not in ("run", "command", "argv", "nproc")}
    try:
        train(resume=settings.pop("resume", None), config_file=settings.pop("config", None), **settings)
    except TrainingInterrupted as interrupted:
        raise SystemExit(INTERRUPTED) from interrupted


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line each of `--nproc`'s processes runs: `argv` without `--nproc N` (or `--nproc=N`)."""
    kept, skip = [], False
    for argument in argv:
        if skip:
            skip = False
        elif argument == "--nproc":
            skip = True
        elif not argument.startswith("--nproc="):
            kept.append(argument)
    return kept


def add_data(commands: argparse._SubParsersAction) -> None:
    """Add `vggnet data`: write a built-in dataset as an image folder."""
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
    from ..data.digits import write_digits

    out = write_digits(args.out)
    print(f"digits dataset in {out}: train/ 1437 images, val/ 360 images, 10 classes")
