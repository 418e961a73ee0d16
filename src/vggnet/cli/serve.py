"""`vggnet serve`: one or more models as an HTTP service and a web page.

vggnet serve --model runs/train/exp/best.pt
vggnet serve --model digits=runs/train/exp/best.pt --model vgg16=vgg16 --pretrained imagenet --port 8080
"""

import argparse
import logging
import os
import re
import time

from ..choices import DEVICES, PRECISIONS
from .parser import at_least

logger = logging.getLogger("vggnet")
# A served model's name appears in URLs: letters, digits, '_', '-' and '.'.
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def add_serve(commands: argparse._SubParsersAction) -> None:
    """Add `vggnet serve`: the Open Inference Protocol (KServe v2), plain routes and a web page."""
    parser = commands.add_parser(
        "serve",
        help="serve models over HTTP: KServe v2 and plain routes, with a web page",
        description="Serve one or more models over HTTP until Ctrl-C or SIGTERM (which finish the requests in "
        "flight). GET / is a web page, /docs the API. Needs the serve extra: pip install 'vggnet[serve]'.",
        epilog="example: vggnet serve --model digits=runs/train/exp/best.pt --model vgg16=vgg16 --pretrained imagenet",
    )
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]CKPT|NAME",
        help="a checkpoint, or a model name with --pretrained; repeat for several (the first is the default); "
        "NAME= names it in the URLs (default: its architecture, e.g. vgg11_bn)",
    )
    parser.add_argument("--pretrained", metavar="imagenet|PATH", help="weights for the models given by name")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA when available (auto)")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="auto: bf16 where native, else fp32 (auto)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1; 0.0.0.0: every one)")
    parser.add_argument("--port", type=int, default=8000, help="port (8000; 0: any free port)")
    parser.add_argument(
        "--max-batch-size", type=at_least(1), default=8, help="images per batch at most (8; 1: no batching)"
    )
    parser.add_argument(
        "--max-delay-ms", type=float, default=5.0, help="how long a batch may wait for requests being decoded (5)"
    )
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="larger request bodies get 413 (20)")
    parser.add_argument("--max-queue", type=at_least(1), default=64, help="images waiting beyond this get 503 (64)")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (default: $VGGNET_API_KEY, if set)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", help="allow browser calls "
                        "from this origin (repeatable; none by default)")  # fmt: skip
    parser.add_argument("--topk", type=at_least(1), default=5, help="classes per image when a request does not say (5)")
    parser.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> None:
    from ..extras import require

    for module in ("fastapi", "uvicorn", "python_multipart", "prometheus_client"):
        require(module, "serve", "vggnet serve")
    from ..serve.run import serve
    from ..serve.settings import ServeSettings

    settings = ServeSettings(
        max_batch_size=args.max_batch_size,
        max_delay_ms=args.max_delay_ms,
        max_upload_mb=args.max_upload_mb,
        max_queue=args.max_queue,
        api_key=args.api_key if args.api_key is not None else os.environ.get("VGGNET_API_KEY"),
        cors_origins=tuple(args.cors_origin),
        topk=args.topk,
    )
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port} is not a port; choose 0-65535 (0: any free port)")
    models, load_seconds = _load_models(args)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        logger.warning("listening on %s without --api-key: anyone who can reach this machine can use it", args.host)
    serve(models, settings, host=args.host, port=args.port, load_seconds=load_seconds)


def _load_models(args: argparse.Namespace) -> tuple[dict, dict[str, float]]:
    """Each --model loaded for inference (in order; the first is the default) and the seconds it took."""
    from ..infer.source import load_for_inference, model_source

    models, load_seconds = {}, {}
    for spec in args.model:
        name, source = _split_spec(spec)
        pretrained = args.pretrained if isinstance(model_source(source), str) else None  # a name, not a file
        started = time.perf_counter()
        loaded = load_for_inference(source, pretrained, args.device, args.precision)
        name = name or getattr(loaded.model, "model_name", None) or os.path.splitext(os.path.basename(source))[0]
        if name in models:
            raise ValueError(
                f"two models are named {name!r}; name each one: --model a={models[name].source} --model b={source}"
            )
        models[name], load_seconds[name] = loaded, time.perf_counter() - started
    return models, load_seconds


def _split_spec(spec: str) -> tuple[str | None, str]:
    """`NAME=SOURCE` -> (NAME, SOURCE); a plain source (or a file whose name holds '=') -> (None, spec)."""
    name, equals, source = spec.partition("=")
    if not equals or os.path.exists(spec):
        return None, spec
    if not _NAME.fullmatch(name) or not source:
        raise ValueError(
            f"--model {spec!r}: a model's name may hold letters, digits, '_', '-' and '.' only, and needs a "
            f"checkpoint or model name after '=' (e.g. digits=runs/train/exp/best.pt)"
        )
    return name, source
