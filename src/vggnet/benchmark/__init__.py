"""`vggnet benchmark`: how fast each way of running VGG is on this machine, measured side by side.

    vggnet benchmark                                  # vgg16, 224x224, batch 1 and 8: speed only
    vggnet benchmark --model vgg16 --pretrained imagenet --batch-size 1,8,32 --peers --compile --int8
    vggnet benchmark --model runs/train/exp/best.pt   # a trained checkpoint, at its own input size

Every path runs the same weights. The rounds are interleaved (each round times every path once), so that a
change in the machine's speed during the run affects all paths alike; the median of the rounds is reported.
Each path's throughput is given as a ratio to the baseline (torchvision's model, eager, fp32: what most users
run) and its achieved GFLOP/s as a fraction of the machine's own compute ceiling at that precision
(`compute_ceiling`), sampled before, between and after the timed rounds: the best sample is the ceiling, and
a spread of the samples above 10% means the machine was busy, which the report says instead of claiming
fractions. Agreement with fp32 (top-1, largest logit difference) is measured on real images (the built-in
digits, or `--data`) with trained weights (`--pretrained`, or a checkpoint as the model); random weights give
nearly tied logits, so with them the report gives speed only. Training throughput compares fp32 with the
default training path. vggnet's paths run with freed memory kept for reuse, as the `vggnet` command sets up
(`allocator`); the baseline and the peers with malloc's default behaviour, switched before each timed call, as
in a process of their own.

- `ceiling`: the machine's measured FLOP/s ceilings, sampled while the paths run
- `inference`: the inference paths (baseline, vggnet's, peers), timed in interleaved rounds, and their agreement
- `training`: training throughput and its fractions of the ceiling, and the data pipeline's rate
- `report`: the report's rows, its warnings and the text tables (`render_benchmark`)
- `run`: `benchmark`, which runs them all in order
- `timing`: one timed call of a path, with its allocator setting

The names below are imported on first use, so that importing the package costs nothing until one is used.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {
    ".report": ["render_benchmark"],
    ".run": ["benchmark"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time `__getattr__` imports each name on first use
    from .report import render_benchmark
    from .run import benchmark
