"""The training data pipeline alone, images/s: how fast this machine can feed a training run, to compare with the
training rate that `vggnet benchmark` measures (on a GPU, whether the CPU's decoding is the bottleneck).

    python benchmarks/data_pipeline.py                      # 1024 ImageNet-sized JPEGs, 224 px
    python benchmarks/data_pipeline.py --images 4096 --workers 4,8,15

Photo-like JPEGs of ImageNet's typical size (500x375, quality 90; `workload.make_images`) go through what vggnet's
trainer runs on each image (`ImageListDataset`: decoding, RandomResizedCrop to 224 and a flip, normalisation) and
its collation, in a DataLoader with each number of worker processes asked for (default: vggnet's default, and one
per spare core). On a machine with a CUDA device, also `vggnet train --decode device` on it: the loader processes
only read the files, and the GPU decodes each batch (nvJPEG), crops, resizes, flips and normalises it. Each figure
is the best of `--rounds` passes over the images (the first pass of a loader starts its workers; that counts, as it
does once per epoch).
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

from vggnet.benchmark.training import data_pipeline_rate
from vggnet.data import Preprocess
from vggnet.data.device_decode import DeviceAugment, EncodedImageDataset, collate_encoded
from vggnet.runtime import default_workers

IMG_SIZE = 224
BATCH = 128


def cpu_rate(paths: list[Path], workers: int, rounds: int) -> float:
    """Images/s through vggnet's training dataset and collation with `workers` loader processes (the best round)."""
    return max(data_pipeline_rate([(path, 0) for path in paths], IMG_SIZE, workers, BATCH) for _ in range(rounds))


def device_rate(paths: list[Path], workers: int, rounds: int) -> float:
    """Images/s of `--decode device` on the GPU: the loader processes read the files (`EncodedImageDataset`), the GPU
    decodes each batch's JPEGs (nvJPEG) and augments them (`DeviceAugment`)."""
    preprocess = Preprocess.imagenet(IMG_SIZE)
    augment = DeviceAugment(preprocess, "basic", torch.device("cuda"))
    dataset = EncodedImageDataset([(path, 0) for path in paths], preprocess.decode_size)
    loader = DataLoader(dataset, batch_size=BATCH, num_workers=workers, collate_fn=collate_encoded)
    best = 0.0
    for _ in range(rounds):
        torch.cuda.synchronize()
        started = time.perf_counter()
        count = 0
        for step, (images, labels, _) in enumerate(loader):
            batch, labels = augment(images, labels, seed=step)
            count += len(labels)
        torch.cuda.synchronize()
        best = max(best, count / (time.perf_counter() - started))
    assert count == len(paths) and batch.shape[1:] == (3, IMG_SIZE, IMG_SIZE)
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
            for count in workers:
                rate = device_rate(paths, count, args.rounds)
                print(
                    f"--decode device ({torch.cuda.get_device_name()}), {count:2d} loader workers: {rate:8.0f} images/s"
                )


if __name__ == "__main__":
    sys.exit(main())
