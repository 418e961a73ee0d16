"""The `vggnet` command. Each verb parses its flags, calls one public Python function and prints the result.

    vggnet models
    vggnet summary --model vgg16 --img-size 224 --format json

Exit codes: 0 success, 1 a failure at run time, 2 a bad argument (the message names it and the fix).

Parsing imports no torch: the flags' choices and defaults come from light modules (`choices`, `models.cfgs`,
`models.registry`, `training.config`), and each verb imports its function when it runs, so that `vggnet --help`
answers at once.

- `parser`: `CommandParser`, argparse with whole flags only and one-line usage errors; the number flags' types
- `training`: `train` (flags made from `TrainConfig`'s fields) and `data`
- `inference`: `eval`, `predict`, `embed`, `features`, `explain`, `export`, `quantize`
- `streaming`: inputs from lists and tables, and `--out DIR.parquet`, for `predict` and `embed`
- `serve`: `serve`, the HTTP service
- `measure`: `summary`, `models` and `benchmark`
"""

import argparse
import os
import sys

from .._version import __version__
from ..allocator import configure_for_commands
from ..console import show_vggnet_messages
from ..training.signals import INTERRUPTED
from .inference import add_embed, add_eval, add_explain, add_export, add_features, add_predict, add_quantize
from .measure import add_benchmark, add_models, add_summary
from .parser import CommandParser
from .serve import add_serve
from .training import add_data, add_train

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
  vggnet serve --model runs/train/exp/best.pt   http://127.0.0.1:8000/ : a web page; /docs : the API
  vggnet data digits --out data/digits   write the built-in dataset as an image folder
  vggnet models                          the variants with their size, cost and ImageNet accuracy
  vggnet summary --model vgg16           shapes, parameters, MACs and receptive field of every layer
  vggnet summary --model vgg16 --format json
  vggnet summary --model runs/train/exp/best.pt

run 'vggnet COMMAND --help' for a command's options.
"""

# In the order `vggnet --help` lists the verbs.
VERBS = (
    add_train,
    add_eval,
    add_predict,
    add_embed,
    add_features,
    add_explain,
    add_export,
    add_quantize,
    add_serve,
    add_benchmark,
    add_data,
    add_summary,
    add_models,
)


def build_parser() -> CommandParser:
    """The `vggnet` command's parser: every verb's flags, each verb's function as `run`."""
    parser = CommandParser(
        prog="vggnet",
        description="Build, load, analyse and use VGG image classifiers.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vggnet {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_verb in VERBS:
        add_verb(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `vggnet` command with `argv` (default: the process arguments) and return its exit code.

    A bad value is exit code 2 with `vggnet VERB: error: ...`; a failure at run time, a missing optional package
    included (its message names the extra to install), is exit code 1 with `vggnet VERB: failed: ...`: one line,
    no traceback. So is an OSError that a verb did not foresee (a full disk, a file another process removed), the
    last safety net: the verbs check their output paths up front (`vggnet.outputs`), as bad values. Ctrl-C is exit
    code 130, with one line.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    show_vggnet_messages()
    configure_for_commands()
    try:
        code = args.run(args) or 0
    except ValueError as error:
        print(f"vggnet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader left (`vggnet models | head`): stop quietly, as other commands do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 1
    except (ImportError, RuntimeError, OSError) as error:  # OSError after BrokenPipeError, which is one
        print(f"vggnet {args.command}: failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C (training has its own: it stops at a batch and saves)
        print(f"\nvggnet {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    return code
