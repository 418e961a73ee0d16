"""Training's dataset scan on a large folder: finding the images and checking them, with a cold and a warm index.

    python benchmarks/scan.py                       # 100,000 small JPEGs in 100 class folders
    python benchmarks/scan.py --images 5000 --format json

Generates `--images` distinct small JPEGs (64x48, noise: every file is decoded in full) in class folders, then
times what `vggnet train` does before its first step: `discover_splits` (listing the folders and splitting them)
and `find_unreadable` with the index under the cache folder, first with no index (cold: every image decoded), then
again with the index the first run wrote (warm: only sizes and modification times compared). Prints images/s for
each step; there is no target, only the record: a warm start should cost seconds where a cold one costs minutes.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from workload import cpu_name

from vggnet.data import discover_splits, find_unreadable

CLASSES = 100


def make_folder(root: Path, count: int) -> None:
    """`count` distinct 64x48 noise JPEGs, spread over CLASSES class folders."""
    rng = np.random.default_rng(0)
    for number in range(count):
        folder = root / f"class{number % CLASSES:03d}"
        folder.mkdir(exist_ok=True)
        pixels = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"image{number:07d}.jpg", quality=90)


def measure(count: int, workers: int, folder: Path) -> dict:
    root = folder / "data"
    root.mkdir()
    make_folder(root, count)
    started = time.perf_counter()
    splits = discover_splits(root, val_split=0.1)
    discovery = time.perf_counter() - started
    paths = [path for path, _ in splits.train + splits.val]
    index = folder / "scan.json"
    seconds = {}
    for state in ("cold", "warm"):
        started = time.perf_counter()
        unreadable = find_unreadable(paths, workers=workers, index=index)
        seconds[state] = time.perf_counter() - started
        assert not unreadable, unreadable[:3]
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "images": len(paths),
        "workers": workers,
        "seconds": {"discovery": discovery, **seconds},
        "images_per_s": {"discovery": len(paths) / discovery, **{k: len(paths) / v for k, v in seconds.items()}},
        "index_mb": index.stat().st_size / 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000, help="JPEGs to generate (100000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding threads (all cores)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        measured = measure(args.images, args.workers, Path(folder))
    if args.format == "json":
        print(json.dumps(measured, indent=2))
        return 0
    rates, seconds = measured["images_per_s"], measured["seconds"]
    print(f"{measured['cpu']} ({measured['cores']} cores, load average {measured['load_average']:.1f}); "
          f"{measured['images']} JPEGs (64x48) in {CLASSES} class folders, {args.workers} threads")  # fmt: skip
    names = {"discovery": "discovery (list and split)", "cold": "check, cold index", "warm": "check, warm index"}
    for step, name in names.items():
        print(f"{name:<28} {seconds[step]:8.1f} s  {rates[step]:>10,.0f} images/s")
    print(f"index: {measured['index_mb']:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
