"""The verbs that measure models: their size and cost (`summary`, `models`) and their speed (`benchmark`).

    vggnet summary --model vgg16 --img-size 224 --format json
    vggnet models
    vggnet benchmark --model runs/train/exp/best.pt --batch-size 1,8

Each imports its function (`analysis.summarize`, `analysis.render_models`, `benchmark.benchmark`) when it runs.
"""

import argparse
import json
from pathlib import Path

from ..choices import DEVICES, PRECISIONS, REPORT_FORMATS
from ..models.cfgs import HEADS
from ..models.registry import list_models
from ..training.config import flag
from .parser import IMG_SIZE, at_least, positive

# The flags that build a registry name's model, named as `VGG`'s arguments and attributes: a checkpoint's model is
# built as it was saved, and so fixes them.
ARCHITECTURE = ("num_classes", "in_chans", "head", "width_mult")


def add_benchmark(commands: argparse._SubParsersAction) -> None:
    """Add `vggnet benchmark`: each way to run VGG here, timed side by side against torchvision's."""
    parser = commands.add_parser(
        "benchmark",
        help="throughput, latency and GFLOP/s of each way to run VGG here, against torchvision",
        description="Time torchvision's eager fp32 model (the baseline) and vggnet's paths on the same weights, "
        "interleaved, with ratios to the baseline, p50/p90 latency, achieved GFLOP/s as a fraction of this "
        "machine's matrix-multiply ceiling, top-1 agreement with fp32 on real images, and training throughput.",
        epilog="example: vggnet benchmark --model runs/train/exp/best.pt --batch-size 1,8 --peers --compile",
    )
    parser.add_argument(
        "--model",
        default="vgg16",
        metavar="CKPT|NAME",
        help="a checkpoint, or a registry name: with --pretrained, or random weights that measure speed only (vgg16)",
    )
    parser.add_argument("--pretrained", metavar="imagenet|PATH", help="weights for a registry name")
    parser.add_argument("--batch-size", type=_batch_sizes, default="1,8", help="comma-separated batch sizes (1,8)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="the fast path's precision (auto)")
    parser.add_argument("--img-size", type=IMG_SIZE, help="input side (default: the checkpoint's, else 224)")
    parser.add_argument("--rounds", type=at_least(1), default=5, help="timed rounds per path (5)")
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also ONNX Runtime and OpenVINO, where installed (with --device cuda: ONNX Runtime's CUDA provider)",
    )
    parser.add_argument("--compile", action="store_true", help="also the torch.compile paths (inference, training)")
    parser.add_argument("--int8", action="store_true", help="also int8 (calibrated on the real images; torchao)")
    parser.add_argument(
        "--data", metavar="DIR", help="real images for the agreement check (default: the built-in digits)"
    )
    parser.add_argument("--no-training", action="store_true", help="skip the training and data-pipeline part")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA when available (auto)")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (table)")
    parser.set_defaults(run=_run_benchmark)


def _batch_sizes(text: str) -> tuple[int, ...]:
    """The type of benchmark's --batch-size: comma-separated batch sizes, each a count of at least 1."""
    return tuple(at_least(1)(size) for size in text.split(","))


def _run_benchmark(args: argparse.Namespace) -> None:
    from ..benchmark import benchmark, render_benchmark

    report = benchmark(
        model=args.model, batch_sizes=args.batch_size, precision=args.precision, img_size=args.img_size,
        rounds=args.rounds, peers=args.peers, compile=args.compile, data=args.data, training=not args.no_training,
        device=args.device, int8=args.int8, pretrained=args.pretrained,
    )  # fmt: skip
    print(json.dumps(report, indent=2) if args.format == "json" else render_benchmark(report))


def add_summary(commands: argparse._SubParsersAction) -> None:
    """Add `vggnet summary`: a model layer by layer, from a registry name or a checkpoint."""
    parser = commands.add_parser(
        "summary",
        help="per-layer shapes, parameters, MACs, receptive field and stride of a model",
        description="Print a model layer by layer: canonical name, type, output shape, parameters, MACs, "
        "receptive field and effective stride, then the totals. A checkpoint's model is the one it saved: "
        "--num-classes, --in-chans, --head and --width-mult build a registry name's.",
        epilog="example: vggnet summary --model vgg16 --img-size 224 --format markdown",
    )
    names = ", ".join(list_models(include_aliases=True))
    parser.add_argument("--model", metavar="CKPT|NAME", help=f"a checkpoint, or one of: {names}")
    parser.add_argument("name", nargs="?", metavar="MODEL", help="the same as --model (the older form)")
    _add_img_size(parser, "side of the square input (default: the checkpoint's image size, else 224)")
    parser.add_argument("--format", choices=REPORT_FORMATS, default="table", help="output format (table)")
    # No defaults of their own (None: not given), so that a checkpoint can refuse them; VGG's are shown.
    parser.add_argument("--num-classes", type=at_least(0), help="classes of the head (1000)")
    parser.add_argument("--in-chans", type=at_least(1), help="input channels (3)")
    parser.add_argument("--head", choices=HEADS, help="classifier head (classic)")
    parser.add_argument("--width-mult", type=positive, help="channel multiplier (1.0)")
    parser.set_defaults(run=_run_summary)


def _add_img_size(parser: argparse.ArgumentParser, help: str, default: int | None = None) -> None:
    """--img-size, as the other verbs name it, and --input-size, the name that `summary` and `models` had, which
    still works but is left out of the help."""
    parser.add_argument("--img-size", type=IMG_SIZE, default=default, help=help)
    parser.add_argument("--input-size", type=IMG_SIZE, dest="img_size", help=argparse.SUPPRESS)


def _run_summary(args: argparse.Namespace) -> None:
    if args.model is None and args.name is None:
        raise ValueError("which model? pass --model NAME (such as vgg16) or --model CHECKPOINT")
    if args.model is not None and args.name is not None:
        raise ValueError(f"the model is given twice (--model {args.model} and {args.name}); give it once, with --model")
    from ..analysis import summarize
    from ..models.factory import load_model

    name = args.model or args.name
    given = {setting: getattr(args, setting) for setting in ARCHITECTURE if getattr(args, setting) is not None}
    if not Path(name).expanduser().is_file():
        summary = summarize(name, args.img_size or 224, **given)
    else:  # a checkpoint describes its own architecture
        model = load_model(Path(name).expanduser())
        if given:
            raise ValueError(_fixed_by_checkpoint({setting: getattr(model, setting) for setting in given}))
        summary = summarize(model, args.img_size or model.pretrained_cfg["preprocess"]["img_size"])
    print(summary.render(args.format))


def _fixed_by_checkpoint(saved: dict[str, object]) -> str:
    """The message for architecture flags given with a checkpoint; `saved`: each one's setting -> the value that
    the checkpoint's model has."""
    flags, values = [flag(setting) for setting in saved], ", ".join(str(value) for value in saved.values())
    if len(flags) == 1:
        return f"{flags[0]} is fixed by the checkpoint ({values}); drop it"
    return f"{', '.join(flags[:-1])} and {flags[-1]} are fixed by the checkpoint ({values}); drop them"


def add_models(commands: argparse._SubParsersAction) -> None:
    """Add `vggnet models`: the registered variants with their size, cost and published accuracy."""
    parser = commands.add_parser(
        "models",
        help="list the VGG variants with parameters, MACs and published ImageNet accuracy",
        description="List every registered variant with its aliases, parameters, GMACs (classic head, 1000 "
        "classes) and the published ImageNet-1K accuracy of its official weights.",
    )
    _add_img_size(parser, "input side for the MACs (224)", default=224)
    parser.add_argument("--format", choices=REPORT_FORMATS, default="table", help="output format (table)")
    parser.set_defaults(run=_run_models)


def _run_models(args: argparse.Namespace) -> None:
    from ..analysis import render_models

    print(render_models(args.img_size, args.format))
