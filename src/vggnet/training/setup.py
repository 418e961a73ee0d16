"""What a training run is built from: seeded generators, the data and its loaders, the model, the optimizer and the
schedule. The loop (`loop.py`) calls these once at the start of a run, with the validated `TrainConfig`.
"""

import hashlib
import logging
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..choices import INFERENCE_BATCH_SIZE
from ..data import (
    DatasetSplits,
    ImageListDataset,
    Preprocess,
    TableColumns,
    collate_skipping_failures,
    default_cache_dir,
    digits_folder,
    splits_of,
)
from ..data.device_decode import DeviceAugment, EncodedImageDataset, collate_encoded
from ..data.transforms import seeded_draws
from ..extras import require
from ..models.factory import create_model
from ..models.loading import weights_keyword
from ..models.vgg import VGG
from ..runtime import available_memory_bytes, usable_cores
from .config import TrainConfig
from .distributed import Distributed
from .scan import check_data
from .signals import ignore_stop_signals

logger = logging.getLogger("vggnet")
# Loader processes start by fork on Linux (sharing the training process's memory, `--cache ram`'s pixels too); on
# other systems Python's default starts them afresh.
LOADERS_FORK = sys.platform == "linux"

# The cosine schedule ends at this fraction of the peak learning rate.
FINAL_LR_FRACTION = 0.01


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    """Seed Python's, NumPy's and torch's generators; with `deterministic`, also ask torch for deterministic
    kernels (else cuDNN may pick the fastest ones)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def prepare_data(config: TrainConfig, distributed: Distributed) -> DatasetSplits:
    """The run's train and validation samples (the built-in digits without `data`), with unreadable images
    skipped, or refused under `strict`; under `no_check`, not looked for (each is then skipped when read). Called
    on every process: the main one finds the data and prints its classes and counts, while the others wait as long
    as that takes; each checks its share of it (`check_data`), and all skip the same images. Every image is decoded
    once: `scan_index` records the verdicts, and a later run on the same data decodes only the files that are new
    or changed."""
    splits, source = distributed.share(lambda: discover_data(config), patient=True)
    if config.no_check:
        return splits
    paths = [path for path, _ in splits.train + splits.val]
    unreadable = sorted(check_data(paths, scan_index(source), distributed), key=lambda error: str(error.path))
    if unreadable:
        listing = "\n".join(f"  {error}" for error in unreadable[:20])
        more = f"\n  ... and {len(unreadable) - 20} more" if len(unreadable) > 20 else ""
        if config.strict:
            raise ValueError(
                f"{len(unreadable)} unreadable image(s) (--strict):\n{listing}{more}\n"
                f"fix or remove them, or drop --strict to skip them"
            )
        if distributed.is_main:
            logger.warning("skipping %d unreadable image(s):\n%s%s", len(unreadable), listing, more)
        bad = {Path(error.path) for error in unreadable}
        splits.train = [s for s in splits.train if s[0] not in bad]
        splits.val = [s for s in splits.val if s[0] not in bad]
        counts = splits.counts()
        lacking = {
            name: [split for split in ("train", "val") if not counts[split][i]] for i, name in enumerate(splits.classes)
        }
        empty = [f"{name!r} has no {' or '.join(missing)} images" for name, missing in lacking.items() if missing]
        if empty:
            raise ValueError(
                f"after skipping unreadable images, {'; '.join(empty)} left: fix or replace the files listed above"
            )
        if distributed.is_main:
            print(f"without them: {len(splits.train)} train, {len(splits.val)} val")
    return splits


def discover_data(config: TrainConfig) -> tuple[DatasetSplits, Path]:
    """The run's samples before any check, and where they were found (the dataset folder, the table, or the folder
    of tables), which keys `scan_index`. Prints the classes and their counts."""
    root = Path(config.data).expanduser() if config.data is not None else digits_folder()
    columns = TableColumns(config.path_column, config.label_column, config.split_column, config.image_root)
    splits = splits_of(root, columns, config.val_split, config.seed)
    sizes = f"{len(splits.classes)} classes, {len(splits.train)} train, {len(splits.val)} val"
    print(f"data {root} ({splits.layout}): {sizes}")
    if len(splits.classes) <= 30:
        print(splits.describe())
    return splits, root


def scan_index(root: Path) -> Path:
    """Where the check of `root`'s images is recorded (`check_data`'s index): under the cache folder, one file
    per dataset (a folder or a table), so that a restart, a resume or another run on the same data decodes only what
    changed."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return default_cache_dir() / "scans" / f"{root.name}-{digest}.json"


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample `index`'s random augmentation in `epoch` of a run seeded `seed`: the same whichever
    process draws it, so that a run's augmentations do not depend on --workers, the number of processes or a
    resume."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class EpochKeys(Sampler):
    """The training samples of the current epoch as (index, seed) keys for `SeededSamples`: one sampler for every
    epoch (`start` sets the epoch and its order), so that the loader and its processes persist."""

    def __init__(self, seed: int) -> None:
        self.seed, self.epoch, self.order = seed, 0, []

    def start(self, epoch: int, order: list[int]) -> None:
        self.epoch, self.order = epoch, order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((index, sample_seed(self.seed, self.epoch, index)) for index in self.order)

    def __len__(self) -> int:
        return len(self.order)


class SeededSamples(Dataset):
    """`dataset` read by (index, seed) keys: item `dataset[index]` with torch's generator seeded by `seed` while
    it is drawn (its random augmentation), and then given back the state it had."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with seeded_draws(seed):
            return self.dataset[index]


def cache_in_memory(datasets: list[ImageListDataset], distributed: Distributed, workers: int) -> None:
    """`--cache ram`: decode the datasets' images once, now, and keep them in memory for the run, when every copy
    fits in half the memory available: one for each training process on this machine, which its loader processes
    share on Linux (forked after this), and one for each of those elsewhere (where they start afresh and are sent a
    copy). Else say so: the images are then read at every epoch."""
    copies = distributed.local_world_size * (1 if LOADERS_FORK else 1 + workers)
    needed = sum(dataset.estimate_decoded_bytes() for dataset in datasets) * copies
    available = available_memory_bytes()
    if available is not None and needed > available // 2:
        if distributed.is_main:
            logger.warning(
                "--cache ram: the images would take about %.1f GB decoded%s, more than half of the %.1f GB of "
                "memory available; reading them from disk at every epoch instead",
                needed / 1e9,
                f" ({copies} copies: one for each process)" if copies > 1 else "",
                available / 1e9,
            )
        return
    started = time.perf_counter()
    threads = max(1, usable_cores() // distributed.local_world_size)  # the machine's cores, shared by its processes
    kept = sum(dataset.keep_decoded(threads) for dataset in datasets)
    if distributed.is_main:
        images = sum(len(dataset) for dataset in datasets)
        print(
            f"cache: {images} images decoded into memory ({kept / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s"
        )


class TrainingData:
    """A run's data: its classes, the datasets of its splits, and the batches this process takes of them. The train
    set is shuffled per epoch and dealt out to the processes (DistributedSampler); validation takes eval's batches
    (`validation_batches`). Training images are decoded and augmented by the loader processes, or with `--decode
    device` only read by them and decoded and augmented on the training device (`data.device_decode`); validation
    always decodes in the loader processes, as `vggnet eval` does."""

    def __init__(
        self,
        splits: DatasetSplits,
        preprocess: Preprocess,
        config: TrainConfig,
        distributed: Distributed,
        device: torch.device,
    ) -> None:
        self.classes = splits.classes
        if config.decode == "device":
            if device.type == "cpu" and distributed.is_main:
                logger.warning(
                    "--decode device on the CPU decodes in the training process, one image after another; "
                    "--decode workers (the default) decodes in parallel there"
                )
            self.train_set = EncodedImageDataset(splits.train, preprocess.decode_size)
            self._collate, self._on_device = collate_encoded, DeviceAugment(preprocess, config.augment, device)
        else:
            train_transform = preprocess.transform(train=True, augment=config.augment)
            self.train_set = ImageListDataset(splits.train, train_transform, preprocess.decode_size)
            self._collate, self._on_device = collate_skipping_failures, None
        self.val_set = ImageListDataset(splits.val, preprocess.transform(), preprocess.decode_size)
        if config.cache == "ram":  # what the loader processes would decode: with --decode device, validation's
            cached = [self.val_set] if config.decode == "device" else [self.train_set, self.val_set]
            cache_in_memory(cached, distributed, config.workers)
        self.sampler = DistributedSampler(
            self.train_set, distributed.world_size, distributed.rank, shuffle=True, seed=config.seed
        )
        self.val_batches = validation_batches(len(self.val_set), distributed.rank, distributed.world_size)
        self.drop_last = len(self.sampler) > config.batch_size  # a short last batch, unless it is the only one
        batches = len(self.sampler) / config.batch_size
        self.steps_per_epoch = math.floor(batches) if self.drop_last else math.ceil(batches)
        self._config, self._rank, self._device = config, distributed.rank, device
        self._train_keys = EpochKeys(config.seed)
        train_set = SeededSamples(self.train_set)
        self._train_loader = self._loader(
            train_set, self._collate, batch_size=config.batch_size, sampler=self._train_keys, drop_last=self.drop_last
        )
        self._val_loader = self._loader(self.val_set, collate_skipping_failures, batch_sampler=self.val_batches)

    def train_loader(self, epoch: int, start_step: int = 0) -> DataLoader:
        """This process's batches of `epoch`, in an order fixed by (seed, epoch), skipping the first `start_step`.
        The same loader every epoch: its processes (`--workers`) start once and stay for the whole run."""
        self.sampler.set_epoch(epoch)
        self._train_keys.start(epoch, list(self.sampler)[start_step * self._config.batch_size :])
        return self._train_loader

    def val_loader(self) -> DataLoader:
        """This process's validation batches (the same loader every epoch, as `train_loader`'s)."""
        return self._val_loader

    def close(self) -> None:
        """Stop the loaders' processes now: they stay from epoch to epoch, and would otherwise stay until the last
        reference to their loader goes (which an exception's traceback may keep)."""
        for loader in (self._train_loader, self._val_loader):
            if loader._iterator is not None:  # torch's: the iterator whose workers persist, once iterated
                loader._iterator._shutdown_workers()

    def to_device(self, images, labels: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch from the loader on the device, channels_last: moved there, or with `--decode device`
        decoded and augmented there (`DeviceAugment`; its draws seeded by the step). A batch may come out with
        fewer images than it went in with: none, if none of them could be decoded."""
        if not len(labels):  # every image of the batch unreadable
            return images, labels
        if self._on_device is not None:
            return self._on_device(images, labels, (self._seed(epoch) * 1_000_003 + step) % 2**63)
        images = images.to(self._device, non_blocking=True, memory_format=torch.channels_last)
        return images, labels.to(self._device, non_blocking=True)

    def _seed(self, epoch: int) -> int:
        """The augmentation's seed for (the run's seed, `epoch`, this process)."""
        return (self._config.seed * 1_000 + epoch) * 1_000 + self._rank

    def _loader(self, dataset, collate, **batching) -> DataLoader:
        """A loader of `dataset` batched as `batching` says (`batch_size` and `sampler`, or `batch_sampler`), whose
        workers stay from epoch to epoch and leave stop signals to the training process; unreadable images are left
        out of their batch. (Workers forked anew at every epoch made the training process copy every page it then
        wrote: the digits with one loader process on 2 cores took 73.0-77.6 s and 1.56 million page faults so,
        66.4-67.9 s and 0.42 million with the workers kept.)"""
        workers = self._config.workers
        return DataLoader(
            dataset,
            num_workers=workers,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(self._config.seed),  # workers' base seeds, not the run's RNG
            pin_memory=self._device.type == "cuda",
            persistent_workers=workers > 0,
            worker_init_fn=ignore_stop_signals,
            multiprocessing_context="fork" if workers and LOADERS_FORK else None,
            **batching,
        )


def build_model(config: TrainConfig, num_classes: int, device: torch.device, pretrained: bool = True) -> VGG:
    """The configured VGG (with its pretrained weights, if any, unless `pretrained` is False) on `device`,
    channels_last; with `freeze_features`, its convolutions take no gradients."""
    model = create_model(
        config.model,
        num_classes=num_classes,
        head=config.head,
        dropout=config.dropout,
        width_mult=config.width_mult,
        **weights_keyword(config.pretrained if pretrained else None),
    )
    if config.freeze_features:
        model.features.requires_grad_(False)
    return model.to(device=device, memory_format=torch.channels_last)


def wrap_for_training(model: VGG, config: TrainConfig, distributed: Distributed, device: torch.device) -> nn.Module:
    """The module the training steps call: the model itself, or under torchrun the model wrapped in DDP (with
    SyncBatchNorm for --sync-bn). Checkpoints always save the bare model, so they load anywhere."""
    if not distributed.enabled:
        return model
    if config.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def build_optimizer(model: VGG, config: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on weight matrices and kernels only, not on biases and norm parameters."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.ndim > 1], "weight_decay": config.weight_decay},
        {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0},
    ]
    # Fused kernels: one pass over each parameter instead of several (the optimizer step of vgg16's 138M
    # parameters is memory-bound), with the same state as the default implementation (SGD gives identical
    # results; AdamW's differ in the last bit).
    if config.opt == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, fused=True)
    return torch.optim.AdamW(groups, lr=config.lr, fused=True)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int, start_step: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step linear warm-up over `warmup_epochs`, then cosine decay to FINAL_LR_FRACTION (or constant).

    Args:
        start_step: The step the run is at: 0 for a new run; for a resumed one, the steps it has taken, counted
            in this run's steps per epoch. The schedule is a function of the step alone, so a resumed run builds
            it at its step (torch's `last_epoch`, after the optimizer's state is loaded) rather than loading it,
            which also places it for another process count or `--epochs`.
    """
    warmup = config.warmup_epochs * steps_per_epoch
    total = config.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.sched == "none":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=start_step - 1)


def describe_run(
    config: TrainConfig,
    model: VGG,
    precision: str,
    device: torch.device,
    world_size: int,
    steps_per_epoch: int,
) -> str:
    """What a run was built as, in two lines: the model, then the processes, precision, schedule and batching."""
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    processes = f"{world_size} processes ({'nccl' if device.type == 'cuda' else 'gloo'}), " if world_size > 1 else ""
    return (
        f"model {model.model_name} ({config.head} head, {_parameters(params)} parameters, "
        f"{_parameters(trainable)} trainable), {model.num_classes} classes"
        + (f", weights {config.pretrained}" if config.pretrained else "")
        + f"\n{processes}device {device.type}, precision {precision}"
        f"{' (autocast)' if precision != 'fp32' else ''}, channels_last, {_counted(config.workers, 'loader worker')}; "
        f"{_counted(config.epochs, 'epoch')} of {_counted(steps_per_epoch, 'step')}, batch {config.batch_size}"
        + (f" per process ({config.batch_size * world_size} in all)" if world_size > 1 else "")
        + f", {config.opt} lr {config.lr:g} ({config.sched}, {_counted(config.warmup_epochs, 'warm-up epoch')})"
        + (", SyncBatchNorm" if config.sync_bn and world_size > 1 else "")
    )


def warmup_warning(config: TrainConfig) -> str | None:
    """What to tell a user whose warm-up is as long as the run or longer (the learning rate then rises for the
    whole run), or None."""
    if not 0 < config.epochs <= config.warmup_epochs:
        return None
    peak = "reaches --lr only at the last step" if config.warmup_epochs == config.epochs else "never reaches --lr"
    return (
        f"--warmup-epochs {config.warmup_epochs} is the whole run (--epochs {config.epochs}): the learning rate "
        f"rises all the way and {peak}; pass a smaller --warmup-epochs (0 for none)"
    )


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _parameters(count: int) -> str:
    """A parameter count as millions (138.36M), or in full where that would round to nothing (a frozen model's
    small head: 1,026)."""
    return f"{count / 1e6:.2f}M" if count >= 10_000 else f"{count:,}"


def validation_batches(count: int, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """This process's validation batches of a validation set of `count` images: the batches `vggnet eval` forms
    (INFERENCE_BATCH_SIZE images, in the data's order), so that each image meets the same batch and is computed
    exactly as eval computes it. Under torchrun the processes take whole batches in turn, so that all of them
    together count each image exactly once."""
    size = INFERENCE_BATCH_SIZE
    batches = [list(range(start, min(start + size, count))) for start in range(0, count, size)]
    return batches[rank::world_size]


def summary_writer_class():
    """TensorBoard's SummaryWriter, checked at set-up: a missing package is named before anything is written."""
    require("tensorboard", "tensorboard", "--tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter
