"""The training data pipeline alone, images/s: how fast this machine can feed a training run, to compare with the
training rate that `vggnet benchmark` measures (on a GPU, whether the CPU's decoding is the bottleneck).

    python benchmarks/data_pipeline.py                      # 1024 ImageNet-sized JPEGs, 224 px
    python benchmarks/data_pipeline.py --images 4096 --workers 4,8,15

Photo-like JPEGs of ImageNet's typical size (500x375, quality 90; `workload.make_images`) go through what vggnet's
trainer runs on each image (`ImageListDataset`: decoding, RandomResizedCrop to 224 and a flip, normalisation) and
its collation, in a DataLoader with each number of worker processes asked for (default: vggnet's default, and one
per spare core). On a machine with a CUDA device, also the same decoding and crop on the GPU: whole batches of file
bytes decoded by `torchvision.io.decode_jpeg(device="cuda")` (nvJPEG), then cropped, resized and flipped there;
which is what a run would switch to if the CPU could not keep up. Each figure is the best of `--rounds` passes
over the images (the first pass of a loader starts its workers; that counts, as it does once per epoch).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from workload import cpu_name, make_images

from vggnet.data import ImageListDataset, Preprocess, collate_skipping_failures
from vggnet.runtime import default_workers

IMG_SIZE = 224
BATCH = 128


def cpu_rate(paths: list[Path], workers: int, rounds: int) -> float:
    """Images/s through vggnet's training dataset and collation with `workers` loader processes."""
    preprocess = Preprocess.imagenet(IMG_SIZE)
    dataset = ImageListDataset([(path, 0) for path in paths], preprocess.transform(train=True), preprocess.decode_size)
    loader = DataLoader(dataset, batch_size=BATCH, num_workers=workers, collate_fn=collate_skipping_failures)
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        count = sum(len(labels) for _, labels, _ in loader)
        best = max(best, count / (time.perf_counter() - started))
    assert count == len(paths), f"{len(paths) - count} images failed to load"
    return best


def gpu_rate(paths: list[Path], rounds: int) -> float:
    """Images/s of nvJPEG decoding in batches, then a random crop resized to 224 and a flip, on the GPU."""
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms import v2

    crop = v2.Compose([v2.RandomResizedCrop(IMG_SIZE, antialias=True), v2.RandomHorizontalFlip()])
    encoded = [read_file(str(path)) for path in paths]
    best = 0.0
    for _ in range(rounds):
        torch.cuda.synchronize()
        started = time.perf_counter()
        for start in range(0, len(encoded), BATCH):
            decoded = decode_jpeg(encoded[start : start + BATCH], device="cuda")
            batch = torch.stack([crop(image) for image in decoded])
        torch.cuda.synchronize()
        best = max(best, len(encoded) / (time.perf_counter() - started))
    assert batch.shape[1:] == (3, IMG_SIZE, IMG_SIZE)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1024, help="distinct JPEGs generated (1024)")
    parser.add_argument("--workers", help="comma-separated loader worker counts (vggnet's default, one per spare core)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the images; the best counts (2)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    workers = [int(n) for n in args.workers.split(",")] if args.workers else sorted({default_workers(), cores - 1})
    with tempfile.TemporaryDirectory() as folder:
        paths = make_images(Path(folder), args.images)
        print(f"{cpu_name()}, {cores} cores; {len(paths)} JPEGs of 500x375 to {IMG_SIZE} px, batches of {BATCH}")
        for count in workers:
            print(f"CPU, {count:2d} loader workers: {cpu_rate(paths, count, args.rounds):8.0f} images/s", flush=True)
        if torch.cuda.is_available():
            print(f"GPU (nvJPEG, {torch.cuda.get_device_name()}): {gpu_rate(paths, args.rounds):8.0f} images/s")


if __name__ == "__main__":
    sys.exit(main())
