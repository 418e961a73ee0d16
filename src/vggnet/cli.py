"""The `vggnet` command. Each verb parses its flags, calls one public Python function and prints the result.

    vggnet models
    vggnet summary --model vgg16 --input-size 224 --format json

Exit codes: 0 success, 1 a failure at run time, 2 a bad argument (the message names it and the fix).

Parsing imports no torch: the flags' choices and defaults come from light modules (`choices`, `models.cfgs`,
`models.registry`, `training.config`), and each verb imports its function when it runs, so that `vggnet --help`
answers at once.
"""

import argparse
import csv
import difflib
import io
import json
import logging
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import NoReturn

from ._version import __version__
from .allocator import configure_for_commands
from .choices import AUGMENTS, DEVICES, EXPORT_FORMATS, INFERENCE_BATCH_SIZE, PRECISIONS, REPORT_FORMATS
from .models.cfgs import HEADS
from .models.registry import list_models
from .tables import render_table
from .training.config import DIGITS_DEFAULTS, OPTIMIZER_DEFAULTS, OPTIMIZERS, SCHEDULERS, TrainConfig

EXAMPLES = """\
examples:
  vggnet train                           train a small VGG on the built-in digits (sized for a CPU)
  vggnet train --data DIR --model vgg16_bn --pretrained imagenet --epochs 20
  vggnet train --resume runs/train/exp/last.pt
  vggnet eval --model runs/train/exp/best.pt --data DIR
  vggnet predict --model runs/train/exp/best.pt photos/ --topk 3 --format json
  vggnet predict --model vgg16 --pretrained imagenet cat.jpg --save-viz out/
  vggnet embed --model runs/train/exp/best.pt photos/ --out features.npz
  vggnet features --model runs/train/exp/best.pt cat.jpg --layer conv1_1 --out grid.png
  vggnet explain --model runs/train/exp/best.pt cat.jpg --out cam.png
  vggnet export --model runs/train/exp/best.pt --format onnx
  vggnet data digits --out data/digits   write the built-in dataset as an image folder
  vggnet models                          the variants with their size, cost and ImageNet accuracy
  vggnet summary --model vgg16           shapes, parameters, MACs and receptive field of every layer
  vggnet summary --model vgg16 --format json
  vggnet summary --model runs/train/exp/best.pt

run 'vggnet COMMAND --help' for a command's options.
"""


class _Parser(argparse.ArgumentParser):
    """The top-level parser, and each verb's (`add_subparsers` makes them of the top-level parser's class).

    It takes whole flags only (`--epoch` is not taken for `--epochs`), and reports a usage error in one line, with
    the command that shows the usage, instead of argparse's usage block. Arguments a verb does not know are the
    verb's error (`vggnet train: error: ...`, with the closest flag): argparse would leave them to the top-level
    parser, whose message names neither the verb nor its flags.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(_unrecognized(self, extras))
        return namespace, extras

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\nrun '{self.prog} --help' for usage\n")


def _unrecognized(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """The message for arguments `parser` does not take, with the closest flag for the first unknown one."""
    message = f"unrecognized arguments: {' '.join(extras)}"
    flag = next((extra.split("=")[0] for extra in extras if extra.startswith("-")), None)
    # argparse keeps its flags only in this attribute, unchanged since Python 2.7.
    close = difflib.get_close_matches(flag, list(parser._option_string_actions), n=1) if flag else []
    return message + (f" (did you mean {close[0]}?)" if close else "")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vggnet",
        description="Build, load, analyse and use VGG image classifiers.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vggnet {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(commands)
    _add_eval(commands)
    _add_predict(commands)
    _add_embed(commands)
    _add_features(commands)
    _add_explain(commands)
    _add_export(commands)
    _add_quantize(commands)
    _add_benchmark(commands)
    _add_data(commands)
    _add_summary(commands)
    _add_models(commands)
    return parser


def _train_default(name: str) -> str:
    """The default of `TrainConfig` field `name` as a help line shows it, followed by the built-in digits' own when
    that differs: `30; without --data: 10`. Both come from `training.config`, so the help cannot drift from it."""
    default = next(field.default for field in fields(TrainConfig) if field.name == name)
    shown = _shown_default(name, default)
    if name in DIGITS_DEFAULTS and DIGITS_DEFAULTS[name] != default:
        return f"{shown}; without --data: {_shown_default(name, DIGITS_DEFAULTS[name])}"
    return shown


def _shown_default(name: str, value: object) -> str:
    if value is None and all(name in defaults for defaults in OPTIMIZER_DEFAULTS.values()):
        return ", ".join(f"{optimizer} {defaults[name]:g}" for optimizer, defaults in OPTIMIZER_DEFAULTS.items())
    return str(value)


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train or fine-tune a VGG on an image folder (default: the built-in digits)",
        description="Train or fine-tune a VGG. DIR holds train/<class>/ and val/<class>/ folders (or valid/, "
        "validation/), or class folders directly, split by --val-split. Without --data, trains a small VGG on the "
        "built-in digits, with settings sized for a CPU: where an option below shows two defaults, the second is "
        "the one used without --data. Writes runs/train/<name>/: config.yaml, metrics.csv, best.pt, last.pt, "
        "results.png, confusion_matrix.png.",
        epilog="examples:\n  vggnet train\n  vggnet train --data ~/flowers --model vgg16_bn --pretrained imagenet "
        "--freeze-features --epochs 10\n  vggnet train --config my.yaml --lr 0.003\n"
        "  vggnet train --resume runs/train/exp/last.pt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # only the flags given override the defaults and --config
    )
    add = parser.add_argument
    default = _train_default
    add("--data", metavar="DIR", help="image folder (default: the built-in digits)")
    add("--val-split", type=float, metavar="F", help=f"held out per class if DIR has no val/ ({default('val_split')})")
    add("--model", metavar="NAME", help=f"one of: {', '.join(list_models(include_aliases=True))} ({default('model')})")
    add("--pretrained", metavar="imagenet|PATH", help="start from these weights (default: random initialisation)")
    add("--head", choices=HEADS, help=f"classifier head ({default('head')})")
    add("--dropout", type=float, help=f"dropout in the head ({default('dropout')})")
    add("--width-mult", type=float, help=f"multiplies every convolution's channels ({default('width_mult')})")
    add("--freeze-features", action="store_true", help="train the head only")
    add("--sync-bn", action="store_true", help="under torchrun, synchronise BatchNorm statistics across processes")
    add("--epochs", type=int, help=f"epochs ({default('epochs')})")
    add("--batch-size", type=int, help=f"images per step ({default('batch_size')})")
    add("--lr", type=float, help=f"peak learning rate ({default('lr')})")
    add("--opt", choices=OPTIMIZERS, help=f"optimizer ({default('opt')})")
    add("--momentum", type=float, help=f"SGD momentum ({default('momentum')})")
    add("--weight-decay", type=float, help=f"on weights, not biases or norms ({default('weight_decay')})")
    add("--sched", choices=SCHEDULERS, help=f"learning-rate schedule after warm-up ({default('sched')})")
    add("--warmup-epochs", type=int, help=f"epochs of linear warm-up ({default('warmup_epochs')})")
    add("--label-smoothing", type=float, help=f"label smoothing ({default('label_smoothing')})")
    add("--img-size", type=int, help=f"square input side ({default('img_size')})")
    add("--crop-pct", type=float, help=f"evaluation centre crop, fraction of the resized image ({default('crop_pct')})")
    add("--augment", choices=AUGMENTS, help=f"training augmentation ({default('augment')})")
    add("--precision", choices=PRECISIONS, help=f"auto: bf16 if the hardware has it, or fp32 ({default('precision')})")
    add("--workers", type=int, help="data-loading processes (default: one per spare core)")
    add("--seed", type=int, help=f"random seed ({default('seed')})")
    add("--deterministic", action="store_true", help="use deterministic algorithms (slower)")
    add("--patience", type=int, help=f"stop after N epochs with no better val top-1, 0: never ({default('patience')})")
    add("--device", choices=DEVICES, help=f"auto: CUDA when available ({default('device')})")
    add("--config", metavar="FILE.yaml", help="settings file; flags override it")
    add("--out", metavar="DIR", help=f"runs folder ({default('out')})")
    add("--name", help=f"run name, numbered when taken: exp, exp2, ... ({default('name')})")
    add("--tensorboard", action="store_true", help="also write TensorBoard event files")
    add("--strict", action="store_true", help="refuse unreadable images before training instead of skipping them")
    add("--resume", metavar="last.pt", help="continue a run from its last.pt")
    add("--nproc", type=int, metavar="N", help="run N processes on this machine through torchrun (DDP)")
    parser.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int | None:
    from .training.loop import TrainingInterrupted, train

    settings = {key: value for key, value in vars(args).items() if key not in ("run", "command", "argv", "nproc")}
    if getattr(args, "nproc", 1) > 1:
        return _launch_torchrun(args.nproc, args.argv)
    try:
        train(resume=settings.pop("resume", None), config_file=settings.pop("config", None), **settings)
    except TrainingInterrupted as interrupted:
        raise SystemExit(130) from interrupted


def _add_model_arguments(parser: argparse.ArgumentParser, precision: bool = True) -> None:
    parser.add_argument(
        "--model", required=True, metavar="CKPT|NAME", help="a checkpoint (best.pt) or a model name with --pretrained"
    )
    parser.add_argument("--pretrained", metavar="imagenet|PATH", help="weights for a model name")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA when available")
    if precision:
        parser.add_argument(
            "--precision",
            choices=PRECISIONS,
            default="auto",
            help="auto: bf16 weights where the hardware runs bf16 natively, else fp32; fp32 is exact (auto)",
        )


def _inference_options(args: argparse.Namespace) -> dict:
    """The keyword arguments that `_add_model_arguments` and `_add_batch_arguments` give the batch verbs."""
    return {
        "pretrained": args.pretrained,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "device": args.device,
        "precision": args.precision,
    }


def _add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size", type=int, default=INFERENCE_BATCH_SIZE, help=f"images per batch ({INFERENCE_BATCH_SIZE})"
    )
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes (0)")


def _add_eval(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "eval",
        help="top-1/top-5, loss, per-class precision/recall/F1 and a confusion matrix on a labelled folder",
        description="Evaluate on DIR's class folders (or those in DIR/val, valid, validation or test). The class "
        "names must be the model's. Writes confusion_matrix.png, confusion_matrix.csv and metrics.json to --out "
        "(default runs/eval/exp, numbered when taken).",
        epilog="example: vggnet eval --model runs/train/exp/best.pt --data data/digits --format json",
    )
    _add_model_arguments(parser)
    parser.add_argument("--data", required=True, metavar="DIR", help="labelled image folder")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (table)")
    parser.add_argument("--out", metavar="DIR", help="folder for the plots and tables (runs/eval/exp)")
    parser.add_argument("--compile", action="store_true", help="torch.compile first (a one-time cost)")
    _add_batch_arguments(parser)
    parser.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> None:
    from .infer.evaluate import evaluate, render_report
    from .training.run_dir import new_run_dir

    out = Path(args.out).expanduser() if args.out else new_run_dir("runs/eval", "exp")
    before = _file_states(out)
    try:
        report = evaluate(args.model, args.data, **_inference_options(args), compile=args.compile, out=out)
    except BaseException:
        if not args.out and not any(out.iterdir()):  # a failed evaluation leaves no empty run folder behind
            out.rmdir()
        raise
    print(render_report(report, args.format))
    written = sorted(name for name, state in _file_states(out).items() if before.get(name) != state)
    print(f"wrote {', '.join(written)} -> {out}", file=sys.stderr)  # stderr: stdout stays the report alone


def _file_states(folder: Path) -> dict[str, tuple[int, int]]:
    """Name -> (modification time, size) of each entry in `folder`, to tell which ones a command wrote."""
    if not folder.is_dir():
        return {}
    return {path.name: (stat.st_mtime_ns, stat.st_size) for path in folder.iterdir() for stat in [path.stat()]}


def _add_predict(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "predict",
        help="classify image files, folders and globs",
        description="Classify images. PATH is a file, a folder (searched recursively) or a glob. An input that "
        "is missing or unreadable gets an error record and the rest still run; the exit code is then 1.",
        epilog="example: vggnet predict --model vgg16 --pretrained imagenet cat.jpg 'photos/*.jpg' --topk 3",
    )
    _add_model_arguments(parser)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    parser.add_argument("--topk", type=int, default=5, help="predictions per image (5)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (table)")
    parser.add_argument("--save-viz", metavar="DIR", help="also write each image with its predictions drawn on it")
    parser.add_argument("--compile", action="store_true", help="torch.compile first (a one-time cost)")
    _add_batch_arguments(parser)
    parser.set_defaults(run=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from .infer.predict import predict

    records = predict(
        args.model,
        args.paths,
        **_inference_options(args),
        topk=args.topk,
        compile=args.compile,
        save_viz=args.save_viz,
        progress=sys.stderr.isatty(),
    )
    print(render_records(records, args.format))
    if args.save_viz:  # stderr: stdout stays parseable JSON or CSV
        drawn = sum("top" in record for record in records)
        print(f"wrote {drawn} image(s) with their predictions drawn -> {args.save_viz}", file=sys.stderr)
    failed = sum("error" in record for record in records)
    if failed:
        print(f"{failed} of {len(records)} input(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _add_embed(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "embed",
        help="one feature vector per image, saved as .npz",
        description="Compute a feature vector per image at --layer (default: the input of the last layer, relu7 "
        "for the classic head) and save features, paths and layer to an .npz file. Spatial layers are "
        "global-average-pooled.",
        epilog="example: vggnet embed --model runs/train/exp/best.pt photos/ --layer pool5 --normalize --out f.npz",
    )
    _add_model_arguments(parser)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    parser.add_argument("--layer", help="canonical layer name (relu7, fc7, pool5, ...)")
    parser.add_argument("--normalize", action="store_true", help="scale each vector to unit L2 norm")
    parser.add_argument("--out", required=True, metavar="FILE.npz", help="where to save")
    _add_batch_arguments(parser)
    parser.set_defaults(run=_run_embed)


def _run_embed(args: argparse.Namespace) -> int:
    from .infer.embed import embed

    embeddings = embed(
        args.model,
        args.paths,
        **_inference_options(args),
        layer=args.layer,
        normalize=args.normalize,
        progress=sys.stderr.isatty(),
    )
    path = embeddings.save(args.out)
    count, width = embeddings.features.shape
    print(f"{count} vectors of {width} values at {embeddings.layer} -> {path}")
    for error in embeddings.errors:
        print(f"{error['path']}: {error['error']}", file=sys.stderr)
    return 1 if embeddings.errors else 0


def _add_features(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "features",
        help="a grid of one layer's feature maps for an image",
        description="Save a grid of the feature maps of --layer for IMAGE, all maps on one colour scale (a colour "
        "bar shows it).",
        epilog="example: vggnet features --model runs/train/exp/best.pt cat.jpg --layer conv1_1 --out grid.png",
    )
    _add_model_arguments(parser, precision=False)
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("--layer", default="conv1_1", help="canonical layer name (conv1_1)")
    parser.add_argument("--max-maps", type=int, default=64, help="at most this many channels (64)")
    parser.add_argument("--out", required=True, metavar="FILE.png")
    parser.set_defaults(run=_run_features)


def _run_features(args: argparse.Namespace) -> None:
    from .infer.visualize import feature_grid

    path = feature_grid(
        args.model, args.image, args.layer, args.out, pretrained=args.pretrained, max_maps=args.max_maps,
        device=args.device,
    )  # fmt: skip
    print(f"feature maps of {args.layer} -> {path}")


def _add_explain(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "explain",
        help="a Grad-CAM heat map of where the evidence for a class is",
        description="Save a Grad-CAM heat map over IMAGE (as the network sees it) for the predicted class or "
        "--class, at the last convolutional block by default.",
        epilog="example: vggnet explain --model vgg16 --pretrained imagenet cat.jpg --class 'tabby' --out cam.png",
    )
    _add_model_arguments(parser, precision=False)
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("--class", dest="target", metavar="NAME", help="class to explain (default: the predicted)")
    parser.add_argument("--layer", help="canonical layer name (default: the last ReLU of block 5)")
    parser.add_argument("--out", required=True, metavar="FILE.png")
    parser.set_defaults(run=_run_explain)


def _run_explain(args: argparse.Namespace) -> None:
    from .infer.visualize import grad_cam, save_grad_cam

    result = grad_cam(
        args.model, args.image, target=args.target, layer=args.layer, pretrained=args.pretrained, device=args.device
    )
    path = save_grad_cam(result, args.out)
    print(f"Grad-CAM of {result.class_name!r} (p={result.probability:.3f}) at {result.layer} -> {path}")


def _add_export(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="ONNX, TorchScript or safetensors, checked by running the written file",
        description="Export the model; BatchNorm is folded for ONNX and TorchScript. The written file is run on "
        "sample inputs against PyTorch and the largest difference printed; beyond tolerance the command fails. "
        "ONNX needs: pip install 'vggnet[export]'.",
        epilog="example: vggnet export --model runs/train/exp/best.pt --format onnx --dynamic-batch",
    )
    _add_model_arguments(parser, precision=False)
    parser.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    parser.add_argument("--out", metavar="PATH", help="output file (default: beside the checkpoint)")
    parser.add_argument("--img-size", type=int, help="input side (default: the model's preprocessing)")
    parser.add_argument("--dynamic-batch", action="store_true", help="let the batch size vary (ONNX)")
    parser.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> None:
    from .infer.export import export

    result = export(
        args.model, args.format, out=args.out, pretrained=args.pretrained, img_size=args.img_size,
        dynamic_batch=args.dynamic_batch,
    )  # fmt: skip
    print(
        f"{result.format} -> {result.path} (input {result.input_size}x{result.input_size}); checked: max abs "
        f"difference {result.max_abs_diff:.3g} (tolerance {result.tolerance:.3g})"
    )


def _add_quantize(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "quantize",
        help="post-training int8 quantization, calibrated on real images (x86 CPUs)",
        description="Quantize to int8 (PT2E, torchao's X86InductorQuantizer) with observers calibrated on images "
        "from --calib, save an .int8.pt that predict and eval take as --model, and with --val report the top-1 change. "
        "Needs: pip install 'vggnet[quantize]'.",
        epilog="example: vggnet quantize --model runs/train/exp/best.pt --calib data/train --val data/val",
    )
    parser.add_argument("--model", required=True, metavar="CKPT|NAME", help="a checkpoint, or a name with --pretrained")
    parser.add_argument("--pretrained", metavar="imagenet|PATH", help="weights for a model name")
    parser.add_argument("--calib", required=True, metavar="DIR", help="representative images (labels not needed)")
    parser.add_argument("--val", metavar="DIR", help="labelled folder to compare fp32 and int8 top-1 on")
    parser.add_argument("--calib-images", type=int, default=256, help="at most this many calibration images (256)")
    parser.add_argument("--out", metavar="PATH", help="output .int8.pt (default: beside the checkpoint)")
    parser.set_defaults(run=_run_quantize)


def _run_quantize(args: argparse.Namespace) -> None:
    from .infer.quantize import quantize

    result = quantize(
        args.model, args.calib, pretrained=args.pretrained, val=args.val, out=args.out, calib_images=args.calib_images
    )
    print(f"int8 model -> {result.path} (calibrated on {result.calibration_images} images)")
    if result.top1_change is not None:
        print(
            f"top-1 on {result.validation_images} images: fp32 {result.fp32_top1:.4f}, int8 {result.int8_top1:.4f} "
            f"({result.top1_change * 100:+.2f} points)"
        )


def _add_benchmark(commands: argparse._SubParsersAction) -> None:
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
    parser.add_argument("--batch-size", default="1,8", help="comma-separated batch sizes (1,8)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="the fast path's precision (auto)")
    parser.add_argument("--img-size", type=int, help="input side (default: the checkpoint's, else 224)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per path (5)")
    parser.add_argument("--peers", action="store_true", help="also ONNX Runtime and OpenVINO, where installed")
    parser.add_argument("--compile", action="store_true", help="also the torch.compile path")
    parser.add_argument("--int8", action="store_true", help="also int8 (calibrated on the real images; torchao)")
    parser.add_argument("--data", metavar="DIR", help="real images for the agreement check (default: digits)")
    parser.add_argument("--no-training", action="store_true", help="skip the training and data-pipeline part")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(run=_run_benchmark)


def _run_benchmark(args: argparse.Namespace) -> None:
    from .infer.benchmark import benchmark, render_benchmark

    try:
        batch_sizes = tuple(int(size) for size in args.batch_size.split(","))
    except ValueError as error:
        raise ValueError(f"--batch-size {args.batch_size!r} must be comma-separated integers, e.g. 1,8") from error
    if args.rounds < 1 or min(batch_sizes) < 1:
        raise ValueError("--rounds and every --batch-size must be at least 1")
    report = benchmark(
        args.model, batch_sizes, args.precision, args.img_size, args.rounds, args.peers, args.compile, args.data,
        not args.no_training, args.device, args.int8, pretrained=args.pretrained,
    )  # fmt: skip
    print(json.dumps(report, indent=2) if args.format == "json" else render_benchmark(report))


def render_records(records: list[dict], style: str) -> str:
    """Prediction records as JSON, CSV (one row per path and rank) or a text table (top prediction first)."""
    if style == "json":
        return json.dumps(records, indent=2)
    if style == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "rank", "class", "index", "prob", "error"])
        for record in records:
            if "error" in record:
                writer.writerow([record["path"], "", "", "", "", record["error"]])
            for rank, top in enumerate(record.get("top", []), start=1):
                writer.writerow([record["path"], rank, top["class"], top["index"], f"{top['prob']:.6f}", ""])
        return buffer.getvalue().rstrip("\n")
    rows = [
        [
            record["path"],
            "ERROR" if "error" in record else record["top"][0]["class"],
            record.get("error") or "  ".join(f"{t['class']} {t['prob']:.3f}" for t in record["top"]),
        ]
        for record in records
    ]
    return render_table(["path", "class", "top predictions"], rows)


def _launch_torchrun(processes: int, argv: list[str]) -> int:
    """Run this same command under torchrun with `processes` processes on this machine; return its exit code."""
    forwarded, skip = [], False
    for argument in argv:
        if skip:
            skip = False
        elif argument == "--nproc":
            skip = True
        elif not argument.startswith("--nproc="):
            forwarded.append(argument)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
        "-m", "vggnet", *forwarded,
    ]  # fmt: skip
    print("running: torchrun " + " ".join(command[3:]), file=sys.stderr)
    return subprocess.run(command, check=False).returncode


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
    from .data.digits import write_digits

    out = write_digits(args.out)
    print(f"digits dataset in {out}: train/ 1437 images, val/ 360 images, 10 classes")


def _add_summary(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "summary",
        help="per-layer shapes, parameters, MACs, receptive field and stride of a model",
        description="Print a model layer by layer: canonical name, type, output shape, parameters, MACs, "
        "receptive field and effective stride, then the totals.",
        epilog="example: vggnet summary --model vgg16 --input-size 224 --format markdown",
    )
    names = ", ".join(list_models(include_aliases=True))
    parser.add_argument("--model", metavar="CKPT|NAME", help=f"a checkpoint, or one of: {names}")
    parser.add_argument("name", nargs="?", metavar="MODEL", help="the same as --model (the older form)")
    parser.add_argument(
        "--input-size", type=int, help="side of the square input (default: 224, or the checkpoint's image size)"
    )
    parser.add_argument("--format", choices=REPORT_FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--num-classes", type=int, default=1000, help="classes of the head (default: 1000)")
    parser.add_argument("--in-chans", type=int, default=3, help="input channels (default: 3)")
    parser.add_argument("--head", choices=HEADS, default="classic", help="classifier head (default: classic)")
    parser.add_argument("--width-mult", type=float, default=1.0, help="channel multiplier (default: 1.0)")
    parser.set_defaults(run=_run_summary)


def _run_summary(args: argparse.Namespace) -> None:
    if args.model is None and args.name is None:
        raise ValueError("which model? pass --model NAME (such as vgg16) or --model CHECKPOINT")
    if args.model is not None and args.name is not None:
        raise ValueError(f"the model is given twice (--model {args.model} and {args.name}); give it once, with --model")
    from .analysis import summarize
    from .models.factory import load_model

    name = args.model or args.name
    if Path(name).expanduser().is_file():  # a checkpoint describes its own architecture
        model = load_model(Path(name).expanduser())
        summary = summarize(model, args.input_size or model.pretrained_cfg["preprocess"]["img_size"])
    else:
        summary = summarize(
            name,
            args.input_size or 224,
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
    parser.add_argument("--format", choices=REPORT_FORMATS, default="table", help="output format (default: table)")
    parser.set_defaults(run=_run_models)


def _run_models(args: argparse.Namespace) -> None:
    from .analysis import describe_models

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


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of each message."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _show_vggnet_messages() -> None:
    """Print vggnet's own log messages (reports, warnings) plainly on stderr; other libraries' stay as set."""
    logger = logging.getLogger("vggnet")
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Run the `vggnet` command with `argv` (default: the process arguments) and return its exit code.

    A bad value is exit code 2 with `vggnet VERB: error: ...`; a failure at run time, a missing optional package
    included (its message names the extra to install), is exit code 1 with `vggnet VERB: failed: ...`: one line,
    no traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    _show_vggnet_messages()
    configure_for_commands()
    try:
        code = args.run(args) or 0
    except ValueError as error:
        print(f"vggnet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (ImportError, RuntimeError) as error:
        print(f"vggnet {args.command}: failed: {error}", file=sys.stderr)
        return 1
    return code
