"""The streaming engines (`--out DIR.parquet`, one process or Ray) against the in-process `vggnet.embed` on the same
images, and the one-process engine's peak memory for 10,000 inputs against 100,000.

    python benchmarks/stream.py                  # a random-weights vgg11 (width 1/4) at 64 px, small JPEGs
    python benchmarks/stream.py --images 2000 --small 2000 --large 20000 --format json

Throughput: `vggnet.embed` (every vector held in memory), `vggnet.engines.stream_embed` (rows streamed into Parquet
shards) and the same with `engine="ray"` (on a local Ray cluster of this machine's cores, started before the timing
as a cluster would be; one model actor of `--ray-cpus` CPUs, decoding tasks in the rest) run on the same `--images`
inputs and batch size, each timed twice in turn (the better of two); the targets of issue 14: the one-process
engine at least 90% of the in-process rate, the Ray engine at least 75%. Every run is a whole job, start-up
included: the Ray engine's (its actor's process importing torch and loading the model, about 7 s on two cores) is
paid once per job, so the default job is large enough (20,000 inputs) to show the rate a large job runs at.

Memory: `vggnet embed --list ... --out DIR.parquet` runs in a fresh process on a list of `--small` and then `--large`
inputs (paths to the same JPEGs, repeated), each reporting its peak resident memory; the target: the same within
10%, since the engine holds a few batches and the list of paths, never the results.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray
from workload import cpu_name, make_checkpoint, make_images

import vggnet
from vggnet.engines import stream_embed

RATE_TARGET = 0.90  # the one-process streaming engine's images/s over the in-process embed's
RAY_TARGET = 0.75  # the Ray engine's images/s over the in-process embed's
MEMORY_TARGET = 1.10  # the peak memory at --large inputs over the peak at --small
DISTINCT = 100  # distinct JPEGs the inputs cycle through


def timed_rates(checkpoint: Path, inputs: list[str], folder: Path, workers: int, ray_cpus: float) -> dict:
    """images/s of the in-process embed and of the two streaming engines, the better of two alternating rounds
    each."""
    options = {"device": "cpu", "precision": "fp32", "batch_size": 32}
    loaded = vggnet.load_for_inference(checkpoint, device="cpu", precision="fp32")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    runs = {
        "in_process": lambda out: vggnet.embed(loaded, inputs, workers=workers, **options),
        "stream": lambda out: stream_embed(loaded, inputs, out, workers=workers, **options),
        "ray": lambda out: stream_embed(checkpoint, inputs, out, engine="ray", cpus_per_worker=ray_cpus, **options),
    }
    rates = {name: [] for name in runs}
    for round_number in range(2):
        for name, run in runs.items():
            started = time.perf_counter()
            run(folder / f"{name}{round_number}.parquet")
            rates[name].append(len(inputs) / (time.perf_counter() - started))
    ray.shutdown()
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
    rates = timed_rates(checkpoint, inputs, folder, args.workers, args.ray_cpus)
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
        "ray_cpus_per_worker": args.ray_cpus,
        "images_per_s": rates,
        "rate_ratio": rates["stream"] / rates["in_process"],
        "ray_ratio": rates["ray"] / rates["in_process"],
        "peak_memory_mb": {str(count): value for count, value in memory.items()},
        "memory_ratio": memory[args.large] / memory[args.small],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20_000, help="inputs of the throughput runs (20000)")
    parser.add_argument("--small", type=int, default=10_000, help="inputs of the first memory run (10000)")
    parser.add_argument("--large", type=int, default=100_000, help="inputs of the second memory run (100000)")
    parser.add_argument("--workers", type=int, default=1, help="decoding processes of the one-process runs (1)")
    parser.add_argument(
        "--ray-cpus", type=float, default=(os.cpu_count() or 2) - 0.5,
        help="CPUs of the Ray engine's model actor (all but half a core, which decodes)",
    )  # fmt: skip
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        measured = measure(args, Path(folder))
    passed = (
        measured["rate_ratio"] >= RATE_TARGET
        and measured["ray_ratio"] >= RAY_TARGET
        and measured["memory_ratio"] <= MEMORY_TARGET
    )
    if args.format == "json":
        print(json.dumps({**measured, "pass": passed}, indent=2))
        return 0 if passed else 1
    rates, memory = measured["images_per_s"], measured["peak_memory_mb"]
    print(f"{measured['cpu']} ({measured['cores']} cores, load average {measured['load_average']:.1f}); "
          f"vgg11 width 1/4 at 64 px, 160x120 JPEGs, batch 32, {args.workers} decoding worker(s)")  # fmt: skip
    print(f"embed, {args.images} inputs: in process {rates['in_process']:.0f} images/s, streamed to Parquet "
          f"{rates['stream']:.0f} images/s: ratio {measured['rate_ratio']:.2f} (target >= {RATE_TARGET})")  # fmt: skip
    print(f"embed on Ray (one actor of {args.ray_cpus:g} CPUs): {rates['ray']:.0f} images/s: ratio "
          f"{measured['ray_ratio']:.2f} (target >= {RAY_TARGET})")  # fmt: skip
    small, large = memory[str(args.small)], memory[str(args.large)]
    print(f"peak memory: {args.small} inputs {small:.0f} MB, {args.large} inputs {large:.0f} MB: "
          f"ratio {measured['memory_ratio']:.2f} (target <= {MEMORY_TARGET})")  # fmt: skip
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
