"""The default main job, timed: `vggnet train` on the built-in digits, against the same run in fp32.

    python benchmarks/train_digits.py [--skip-baseline]

Prints wall time, validation top-1 and training images/s of the default run (precision auto) and of the fp32
baseline, and the ratio between them. The README states what it measured, with the machine.
"""

import argparse
import contextlib
import io
import platform
import tempfile
import time

import torch

import vggnet
from vggnet.allocator import keep_freed_memory, release_freed_memory


def timed_run(out: str, vggnet_command: bool, **settings) -> dict:
    """One `vggnet.train` run; `vggnet_command`: with the memory setting the `vggnet` command applies at start."""
    (keep_freed_memory if vggnet_command else release_freed_memory)()
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = vggnet.train(out=out, **settings)
    return {
        "wall_s": time.perf_counter() - started,
        "best_top1": result.best["val_top1"],
        "images_per_s": result.metrics["images_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-baseline", action="store_true", help="time the default run only")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as out:
        runs = {"default (auto)": timed_run(out, vggnet_command=True)}
        if not args.skip_baseline:
            runs["baseline fp32"] = timed_run(out, vggnet_command=False, precision="fp32")
    for name, run in runs.items():
        print(
            f"{name:16s} wall {run['wall_s']:6.1f} s   best val top-1 {run['best_top1']:.4f}   "
            f"last epoch {run['images_per_s']:6.0f} img/s"
        )
    if "baseline fp32" in runs:
        default, baseline = runs["default (auto)"], runs["baseline fp32"]
        print(
            f"speed-up of the default over fp32: {baseline['wall_s'] / default['wall_s']:.2f}x wall, "
            f"{default['images_per_s'] / baseline['images_per_s']:.2f}x images/s"
        )
    default = runs["default (auto)"]
    verdict = "meets" if default["wall_s"] <= 120 and default["best_top1"] >= 0.98 else "misses"
    print(f"default run {verdict} the target (<= 120 s, >= 0.98 top-1)")


if __name__ == "__main__":
    main()
