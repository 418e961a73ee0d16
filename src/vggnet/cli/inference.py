"""The verbs that use a model: `eval`, `predict`, `embed`, `features`, `explain`, `export` and `quantize`.

    vggnet eval --model runs/train/exp/best.pt --data DIR|TABLE
    vggnet predict --model vgg16 --pretrained imagenet cat.jpg --topk 3 --format json

Each takes the model the same way (a checkpoint, or a registry name with `--pretrained`), and the batch verbs
(`eval`, `predict`, `embed`) the same batch flags.
"""

import argparse
import sys
from pathlib import Path

from ..choices import DEVICES, EXPORT_FORMATS, INFERENCE_BATCH_SIZE, PRECISIONS
from .parser import IMG_SIZE, at_least
from .streaming import add_input_arguments, inputs_of, run_stream, streams
from .training import TABLE_SETTINGS, add_settings


def _add_model_arguments(parser: argparse.ArgumentParser, precision: bool = True) -> None:
    parser.add_argument(
        "--model", required=True, metavar="CKPT|NAME", help="a checkpoint (best.pt) or a model name with --pretrained"
    )
    parser.add_argument("--pretrained", metavar="imagenet|PATH", help="weights for a model name")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA when available (auto)")
    if precision:
        parser.add_argument(
            "--precision",
            choices=PRECISIONS,
            default="auto",
            help="auto: bf16 weights where the hardware runs bf16 natively, else fp32 (auto)",
        )


def _add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size",
        type=at_least(1),
        default=INFERENCE_BATCH_SIZE,
        help=f"images per batch ({INFERENCE_BATCH_SIZE})",
    )
    parser.add_argument(
        "--workers",
        type=at_least(0),
        metavar="N",
        help="decoding processes (default: one per spare core, up to 8, when the inputs make more than one batch)",
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


def add_eval(commands: argparse._SubParsersAction) -> None:
    """Add `vggnet eval`: accuracy, loss, per-class scores and a confusion matrix on a labelled folder."""
    parser = commands.add_parser(
        "eval",
        help="top-1/top-5, loss, per-class precision/recall/F1 and a confusion matrix on a labelled folder or table",
        description="Evaluate on DIR's class folders (or those in DIR/val, valid, validation or test), or on the "
        "rows of TABLE, a .csv or .parquet file of image paths and labels (with --split-column, its val rows), or on "
        "DIR's val.csv (or valid, validation, test; .csv or .parquet). The class names must be the model's. Writes "
        "confusion_matrix.png, confusion_matrix.csv and metrics.json to --out (default runs/eval/exp, numbered when "
        "taken).",
        epilog="examples:\n  vggnet eval --model runs/train/exp/best.pt --data data/digits --format json\n"
        "  vggnet eval --model runs/train/exp/best.pt --data labels.parquet --split-column split",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_arguments(parser)
    parser.add_argument("--data", required=True, metavar="DIR|TABLE", help="labelled image folder or table")
    add_settings(parser, TABLE_SETTINGS)
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (table)")
    parser.add_argument("--out", metavar="DIR", help="folder for the plots and tables (runs/eval/exp)")
    parser.add_argument("--compile", action="store_true", help="torch.compile first (a one-time cost)")
    _add_batch_arguments(parser)
    parser.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> None:
    from ..infer.evaluate import evaluate, render_report
    from ..training.run_dir import new_run_dir

    out = Path(args.out).expanduser() if args.out else new_run_dir("runs/eval", "exp")
    before = _file_states(out)
    columns = {name: getattr(args, name) for name in TABLE_SETTINGS if getattr(args, name) is not None}
    try:
        report = evaluate(args.model, args.data, **_inference_options(args), **columns, compile=args.compile, out=out)
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


def add_predict(commands: argparse._SubParsersAction) -> None:
    """Add `vggnet predict`: classify image files, folders and globs."""
    parser = commands.add_parser(
        "predict",
        help="classify image files, folders and globs",
        description="Classify images. PATH is a file, a folder (searched recursively) or a glob. An input that "
        "is missing or unreadable gets an error record and the rest still run; the exit code is then 1.",
        epilog="example: vggnet predict --model vgg16 --pretrained imagenet cat.jpg 'photos/*.jpg' --topk 3",
    )
    _add_model_arguments(parser)
    add_input_arguments(parser)
    parser.add_argument("--topk", type=at_least(1), default=5, help="predictions per image (5)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (table)")
    parser.add_argument(
        "--out", metavar="DIR.parquet", help="stream the rows into resumable Parquet shards there (default: print them)"
    )
    parser.add_argument("--save-viz", metavar="DIR", help="also write each image with its predictions drawn on it")
    parser.add_argument("--compile", action="store_true", help="torch.compile first (a one-time cost)")
    _add_batch_arguments(parser)
    parser.set_defaults(run=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from ..infer.predict import predict
    from ..infer.records import render_records

    if args.out is not None:
        if not streams(args):
            out = Path(args.out)
            printed = out.suffix[1:] if out.suffix in (".json", ".csv") else "json"
            raise ValueError(
                f"--out {out}: predict's --out is a folder of Parquet shards, its name ending in .parquet (--out "
                f"{out.with_suffix('.parquet')}); for JSON or CSV, drop --out and redirect the output: --format "
                f"{printed} > {out.with_suffix('.' + printed)}"
            )
        if args.save_viz:
            raise ValueError("--save-viz draws printed predictions; drop it with --out DIR.parquet")
        return run_stream(args, _inference_options(args), topk=args.topk)
    records = predict(
        args.model,
        inputs_of(args),
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


def add_embed(commands: argparse._SubParsersAction) -> None:
    """Add `vggnet embed`: one feature vector per image, saved as .npz or streamed into Parquet shards."""
    parser = commands.add_parser(
        "embed",
        help="one feature vector per image, saved as .npz or streamed into Parquet shards",
        description="Compute a feature vector per image at --layer (default: the input of the last layer, relu7 "
        "for the classic head) and save features, paths and layer to an .npz file, or stream them into the "
        "Parquet shards of --out DIR.parquet (one row per input, resumable: run the same command again after a "
        "stop). Spatial layers are global-average-pooled.",
        epilog="example: vggnet embed --model runs/train/exp/best.pt photos/ --layer pool5 --normalize --out f.npz",
    )
    _add_model_arguments(parser)
    add_input_arguments(parser)
    parser.add_argument(
        "--layer", help="canonical layer name, such as relu7, fc7 or pool5 (default: the input of the last layer)"
    )
    parser.add_argument("--normalize", action="store_true", help="scale each vector to unit L2 norm")
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE.npz|DIR.parquet",
        help="an .npz file, or a .parquet folder of streamed, resumable shards",
    )
    _add_batch_arguments(parser)
    parser.set_defaults(run=_run_embed)


def _run_embed(args: argparse.Namespace) -> int:
    from ..infer.embed import embed, npz_path

    if streams(args):
        return run_stream(args, _inference_options(args), layer=args.layer, normalize=args.normalize)
    npz_path(args.out)  # a bad --out is refused before the inference, not after it
    embeddings = embed(
        args.model,
        inputs_of(args),
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


# What `features` and `explain` say of their --out (`infer.visualize.figure_path` decides it).
PICTURE_OUT = "the picture file: .png, or another suffix matplotlib writes (.pdf, .svg, .jpg, ...); none: .png"


def add_features(commands: argparse._SubParsersAction) -> None:
    """Add `vggnet features`: a grid of one layer's feature maps for an image."""
    parser = commands.add_parser(
        "features",
        help="a grid of one layer's feature maps for an image",
        description="Save a grid of the feature maps of --layer for IMAGE, all maps on one colour scale (a colour "
        "bar shows it).",
        epilog="example: vggnet features --model runs/train/exp/best.pt cat.jpg --layer conv1_1 --out grid.png",
    )
    _add_model_arguments(parser, precision=False)
    parser.add_argument("image", metavar="IMAGE", help="the image file")
    parser.add_argument("--layer", default="conv1_1", help="canonical layer name (conv1_1)")
    parser.add_argument("--max-maps", type=at_least(1), default=64, help="at most this many channels (64)")
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE.png|DIR",
        help=f"{PICTURE_OUT}; a folder gets <image>_<layer>.png (cat_conv1_1.png for cat.jpg)",
    )
    parser.set_defaults(run=_run_features)


def _run_features(args: argparse.Namespace) -> None:
    from ..infer.visualize import feature_grid

    path = feature_grid(
        args.model, args.image, args.layer, args.out, pretrained=args.pretrained, max_maps=args.max_maps,
        device=args.device,
    )  # fmt: skip
    print(f"feature maps of {args.layer} -> {path}")


def add_explain(commands: argparse._SubParsersAction) -> None:
    """Add `vggnet explain`: a Grad-CAM heat map over an image."""
    parser = commands.add_parser(
        "explain",
        help="a Grad-CAM heat map of where the evidence for a class is",
        description="Save a Grad-CAM heat map over IMAGE (as the network sees it) for the predicted class or "
        "--class, at the last convolutional block by default.",
        epilog="example: vggnet explain --model vgg16 --pretrained imagenet cat.jpg --class 'tabby' --out cam.png",
    )
    _add_model_arguments(parser, precision=False)
    parser.add_argument("image", metavar="IMAGE", help="the image file")
    parser.add_argument("--class", dest="target", metavar="NAME", help="class to explain (default: the predicted)")
    parser.add_argument("--layer", help="canonical layer name (default: the last ReLU of block 5)")
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE.png|DIR",
        help=f"{PICTURE_OUT}; a folder gets <image>_gradcam.png (cat_gradcam.png for cat.jpg)",
    )
    parser.set_defaults(run=_run_explain)


def _run_explain(args: argparse.Namespace) -> None:
    from ..infer.visualize import grad_cam, grad_cam_path, save_grad_cam

    out = grad_cam_path(args.out, args.image)  # a bad --out is refused before the model loads
    result = grad_cam(
        args.model, args.image, target=args.target, layer=args.layer, pretrained=args.pretrained, device=args.device
    )
    path = save_grad_cam(result, out)
    print(f"Grad-CAM of {result.class_name!r} (p={result.probability:.3f}) at {result.layer} -> {path}")


def add_export(commands: argparse._SubParsersAction) -> None:
    """Add `vggnet export`: ONNX, TorchScript or safetensors, checked by running the written file."""
    parser = commands.add_parser(
        "export",
        help="ONNX, TorchScript or safetensors, checked by running the written file",
        description="Export the model; BatchNorm is folded for ONNX and TorchScript. The written file is run on "
        "sample inputs against PyTorch and the largest difference printed; beyond tolerance the command fails. "
        "ONNX needs: pip install 'vggnet[export]'.",
        epilog="example: vggnet export --model runs/train/exp/best.pt --format onnx --dynamic-batch",
    )
    _add_model_arguments(parser, precision=False)
    parser.add_argument(
        "--format", choices=EXPORT_FORMATS, required=True,
        help="what to write: an ONNX graph, a TorchScript program, or the weights with their metadata as safetensors",
    )  # fmt: skip
    parser.add_argument("--out", metavar="PATH", help="output file (default: beside the checkpoint)")
    parser.add_argument("--img-size", type=IMG_SIZE, help="input side (default: the model's preprocessing)")
    parser.add_argument("--dynamic-batch", action="store_true", help="let the batch size vary (ONNX)")
    parser.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> None:
    from ..infer.export import export

    result = export(
        args.model, args.format, out=args.out, pretrained=args.pretrained, img_size=args.img_size,
        dynamic_batch=args.dynamic_batch,
    )  # fmt: skip
    print(
        f"{result.format} -> {result.path} (input {result.input_size}x{result.input_size}); checked: max abs "
        f"difference {result.max_abs_diff:.3g} (tolerance {result.tolerance:.3g})"
    )


def add_quantize(commands: argparse._SubParsersAction) -> None:
    """Add `vggnet quantize`: post-training int8 quantization, calibrated on real images."""
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
    parser.add_argument(
        "--calib-images", type=at_least(1), default=256, help="at most this many calibration images (256)"
    )
    parser.add_argument("--out", metavar="PATH", help="output .int8.pt (default: beside the checkpoint)")
    parser.set_defaults(run=_run_quantize)


def _run_quantize(args: argparse.Namespace) -> None:
    from ..infer.quantize import quantize

    result = quantize(
        args.model, args.calib, pretrained=args.pretrained, val=args.val, out=args.out, calib_images=args.calib_images
    )
    print(f"int8 model -> {result.path} (calibrated on {result.calibration_images} images)")
    if result.top1_change is not None:
        print(
            f"top-1 on {result.validation_images} images: fp32 {result.fp32_top1:.4f}, int8 {result.int8_top1:.4f} "
            f"({result.top1_change * 100:+.2f} points)"
        )
