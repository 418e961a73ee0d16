"""vggnet's own CPU kernels against oneDNN's alone, interleaved A/B in one process.

- inference: the inference form (BatchNorm folded, ReLU fused) with Winograd's F(2x2, 3x3) on its small maps
  (`models/winograd.py`) against the same form with every convolution left to oneDNN;
- training: vggnet's training step with its kernels (`models/cpu_training.py`: in fp32 on AVX2 and AVX-512 CPUs
  Winograd's weight gradient, or the matrix product's, and Winograd's forward and input gradient where they pay;
  in bf16 Winograd's where it pays) against the same step with oneDNN's kernels alone, and in fp32 against the same
  step without Winograd (what Winograd alone adds over the matrix-product weight gradient).

    python benchmarks/cpu_kernels.py                      # vgg16 at 224, batch 1 and 8; training at batch 8
    python benchmarks/cpu_kernels.py --precision bf16     # default: fp32
    python benchmarks/cpu_kernels.py --format json

Each round times one call of each side back to back, so that a busy neighbour slows both; the report gives the
ratio of the medians and each round's ratio. Neither side's figure is a target here: `vggnet benchmark` compares
against the peers.
"""

import argparse
import contextlib
import json
import statistics
import time
from unittest import mock

import torch

import vggnet
import vggnet.models.cpu_training as cpu_training
import vggnet.models.inference_form as inference_form
import vggnet.models.winograd as winograd
from vggnet.allocator import keep_freed_memory
from vggnet.benchmark.training import make_training_step
from vggnet.runtime import autocast_dtype

NEVER = 1 << 30  # a channel count no layer reaches: the kernel is never taken


def interleaved(sides: dict, rounds: int, images: int) -> dict:
    """Images per second of each side (a name -> a call), timed in `rounds` interleaved rounds after a warm-up."""
    for call in sides.values():
        call()
    seconds = {name: [] for name in sides}
    for _ in range(rounds):
        for name, call in sides.items():
            started = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    (base, base_times), (ours, our_times) = seconds.items()
    return {
        "images_per_s": {name: images / median for name, median in medians.items()},
        "ratio": medians[base] / medians[ours],
        "round_ratios": [b / o for b, o in zip(base_times, our_times, strict=True)],
    }


def without(module, constants: tuple[str, ...], call):
    """`call` with kernels switched off: each of `module`'s `constants`, the fewest input channels a kernel takes,
    past any layer's."""

    def switched_off():
        with contextlib.ExitStack() as stack:
            for constant in constants:
                stack.enter_context(mock.patch.object(module, constant, NEVER))
            return call()

    return switched_off


def inference_sides(model, batch: int, size: int, precision: str) -> dict:
    dtype = autocast_dtype(precision) or torch.float32
    form = inference_form.inference_form(model, dtype, torch.device("cpu"))
    x = torch.randn(batch, 3, size, size, dtype=dtype).contiguous(memory_format=torch.channels_last)
    return {
        "oneDNN only": without(winograd, ("WINOGRAD_MIN_CHANNELS",), lambda: form(x)),
        "with Winograd": lambda: form(x),
    }


def training_sides(name: str, head: str, batch: int, size: int, precision: str, winograd_alone: bool) -> dict:
    images, labels = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    step = make_training_step(name, head, torch.device("cpu"), images, labels, precision)
    if winograd_alone:
        all_of_it = ("WINOGRAD_MIN_CHANNELS", "WINOGRAD_WEIGHT_GRAD_MIN_CHANNELS")
        return {"without Winograd": without(winograd, all_of_it, step), "with Winograd": step}
    return {"oneDNN only": without(cpu_training, ("MIN_CHANNELS_FOR_OWN_KERNELS",), step), "vggnet's": step}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vgg16", help="registry name (random weights)")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", default="1,8", help="comma-separated inference batch sizes")
    parser.add_argument("--train-batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the vggnet commands run
    torch.manual_seed(0)
    model = vggnet.create_model(args.model).eval()
    rows = []
    with torch.no_grad():
        for batch in (int(b) for b in args.batch_size.split(",")):
            result = interleaved(inference_sides(model, batch, args.img_size, args.precision), args.rounds, batch)
            rows.append({"case": f"inference {args.model} {args.img_size} batch {batch}", **result})
    for head, size, batch in (("classic", args.img_size, args.train_batch_size), ("compact", 32, 64)):
        # in bf16 vggnet's kernels are Winograd's alone: without it is oneDNN only
        for winograd_alone in (False, True) if args.precision == "fp32" else (False,):
            sides = training_sides(args.model, head, batch, size, args.precision, winograd_alone)
            result = interleaved(sides, args.rounds, batch)
            rows.append({"case": f"training {args.model} ({head}) {size} batch {batch}", **result})
    report = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "precision": args.precision,
        "rows": rows,
    }
    if args.format == "json":
        print(json.dumps(report, indent=1))
        return report
    capability, threads = report["cpu_capability"], report["threads"]
    print(
        f"CPU capability {capability}, {threads} threads, {args.precision}; medians of {args.rounds} interleaved rounds"
    )
    for row in rows:
        (base, base_rate), (ours, our_rate) = row["images_per_s"].items()
        rounds = " ".join(f"{r:.2f}" for r in row["round_ratios"])
        sides = f"{base} {base_rate:7.2f} img/s  {ours} {our_rate:7.2f} img/s"
        print(f"{row['case']:42s} {sides}  {row['ratio']:.2f}x  (rounds: {rounds})")
    return report


if __name__ == "__main__":
    main()
