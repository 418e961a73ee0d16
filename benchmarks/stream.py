"""The streaming engine (`--out DIR.parquet`) against the in-process `vggnet.embed` on the same images, and its peak
memory for 10,000 inputs against 100,000.

    python benchmarks/stream.py                  # a random-weights vgg11 (width 1/4) at 64 px, small JPEGs
    python benchmarks/stream.py --images 2000 --small 2000 --large 20000 --format json

Throughput: `vggnet.embed` (every vector held in memory) and `vggnet.engines.stream_embed` (rows streamed into
Parquet shards) run in this process on the same `--images` inputs, same batch size and decoding workers, each timed
twice in turn (the better of two); the target of issue 14: the streaming engine at least 90% of the in-process
rate. Memory: `vggnet embed --list ... --out DIR.parquet` runs in a fresh process on a list of `--small` and then
`--large` inputs (paths to the same JPEGs, repeated), each reporting its peak resident memory; the target: the same
within 10%, since the engine holds a few batches and the list of paths, never the results.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workload import cpu_name, make_checkpoint, make_images

import vggnet
from vggnet.engines import stream_embed

RATE_TARGET = 0.90  # the streaming engine's images/s over the in-process embed's
MEMORY_TARGET = 1.10  # the peak memory at --large inputs over the peak at --small
DISTINCT = 100  # distinct JPEGs the inputs cycle through


def timed_rates(checkpoint: Path, inputs: list[str], folder: Path, workers: int) -> dict:
    """images/s of the in-process embed and of the streaming engine, the better of two alternating rounds each."""
    options = {"device": "cpu", "precision": "fp32", "batch_size": 32, "workers": workers}
    loaded = vggnet.load_for_inference(checkpoint, device="cpu", precision="fp32")
    rates = {"in_process": [], "stream": []}
    for round_number in range(2):
        started = time.perf_counter()
        vggnet.embed(loaded, inputs, **options)
        rates["in_process"].append(len(inputs) / (time.perf_counter() - started))
        started = time.perf_counter()
        stream_embed(loaded, inputs, folder / f"round{round_number}.parquet", **options)
        rates["stream"].append(len(inputs) / (time.perf_counter() - started))
    return {name: max(values) for name, values in rates.items()}


def peak_memory_mb(checkpoint: Path, listing: Path, out: Path, workers: int) -> float:
    """The peak resident memory of `vggnet embed --list listing --out out` in a fresh process (decoding workers,
    which are separate processes, not counted)."""
    argv = ["embed", "--model", str(checkpoint), "--list", str(listing), "--out", str(out), "--device", "cpu",
            "--precision", "fp32", "--batch-size", "32", "--workers", str(workers)]  # fmt: skip
    code = (
        "import resource, sys; from vggnet.cli import main; code = main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    return int(done.stderr.strip().splitlines()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def write_list(folder: Path, images: list[Path], count: int) -> Path:
    listing = folder / f"inputs_{count}.txt"
    listing.write_text("".join(f"{images[i % len(images)].name}\n" for i in range(count)))
    return listing


def measure(args: argparse.Namespace, folder: Path) -> dict:
    checkpoint = make_checkpoint(folder, img_size=64, width_mult=0.25)
    images = make_images(folder, DISTINCT, size=(160, 120))
    inputs = [str(images[i % DISTINCT]) for i in range(args.images)]
    rates = timed_rates(checkpoint, inputs, folder, args.workers)
    memory = {
        count: peak_memory_mb(checkpoint, write_list(folder, images, count), folder / f"m{count}.parquet", args.workers)
        for count in (args.small, args.large)
    }
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "images": args.images,
        "workers": args.workers,
        "images_per_s": rates,
        "rate_ratio": rates["stream"] / rates["in_process"],
        "peak_memory_mb": {str(count): value for count, value in memory.items()},
        "memory_ratio": memory[args.large] / memory[args.small],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000, help="inputs of the throughput runs (3000)")
    parser.add_argument("--small", type=int, default=10_000, help="inputs of the first memory run (10000)")
    parser.add_argument("--large", type=int, default=100_000, help="inputs of the second memory run (100000)")
    parser.add_argument("--workers", type=int, default=1, help="decoding processes (1)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        measured = measure(args, Path(folder))
    passed = measured["rate_ratio"] >= RATE_TARGET and measured["memory_ratio"] <= MEMORY_TARGET
    if args.format == "json":
        print(json.dumps({**measured, "pass": passed}, indent=2))
        return 0 if passed else 1
    rates, memory = measured["images_per_s"], measured["peak_memory_mb"]
    print(f"{measured['cpu']} ({measured['cores']} cores, load average {measured['load_average']:.1f}); "
          f"vgg11 width 1/4 at 64 px, 160x120 JPEGs, batch 32, {args.workers} decoding worker(s)")  # fmt: skip
    print(f"embed, {args.images} inputs: in process {rates['in_process']:.0f} images/s, streamed to Parquet "
          f"{rates['stream']:.0f} images/s: ratio {measured['rate_ratio']:.2f} (target >= {RATE_TARGET})")  # fmt: skip
    small, large = memory[str(args.small)], memory[str(args.large)]
    print(f"peak memory: {args.small} inputs {small:.0f} MB, {args.large} inputs {large:.0f} MB: "
          f"ratio {measured['memory_ratio']:.2f} (target <= {MEMORY_TARGET})")  # fmt: skip
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
