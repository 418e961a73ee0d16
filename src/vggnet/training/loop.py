"""The training loop behind `vggnet train` and `vggnet.train(...)`.

    vggnet train                                    # the built-in digits (README: measured times)
    vggnet train --data ~/flowers --model vgg16_bn --pretrained imagenet --epochs 20
    vggnet train --resume runs/train/exp/last.pt    # continue where it stopped

Each epoch trains, validates, then writes `last.pt` (and `best.pt` when validation top-1 improved),
`metrics.csv` and `results.png` into the run folder. Ctrl-C (or SIGTERM) stops at the next batch boundary,
saves `last.pt` and prints the command that resumes.

Validation runs the model as `vggnet eval` does (`models.inference_form`: at bf16/fp16, BatchNorm folded and the
weights cast; the same batches), so that `vggnet eval` of `best.pt` on the validation folder reproduces the top-1,
top-5 and loss it records, at the precision the run used (`runtime.precision` in the checkpoint).
"""

import contextlib
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..atomic import atomic_save
from ..choices import INFERENCE_BATCH_SIZE
from ..data import (
    DatasetSplits,
    ImageListDataset,
    build_transform,
    collate_skipping_failures,
    digits_folder,
    discover_splits,
    find_unreadable,
)
from ..extras import require
from ..infer.evaluate import evaluation_metrics, evaluation_sums
from ..models.factory import create_model
from ..models.inference_form import inference_input, low_precision_copy
from ..models.vgg import VGG
from ..models.weights import IMAGENET_PREPROCESS
from ..plots import plot_confusion_matrix, plot_results
from ..runtime import autocast_dtype, resolve_precision
from .checkpoint import (
    capture_rng,
    load_resume_checkpoint,
    model_checkpoint,
    remove_stale_temporaries,
    restore_rng,
)
from .config import TrainConfig, load_config_file, make_config
from .distributed import Distributed
from .run_dir import new_run_dir, write_config_yaml, write_metrics_csv

logger = logging.getLogger("vggnet")

# Settings that may be given again when resuming: `epochs` extends (or shortens) the run and its schedule; the
# others do not change the results.
RESUME_OVERRIDABLE = ("epochs", "workers", "device")
# The cosine schedule ends at this fraction of the peak learning rate.
FINAL_LR_FRACTION = 0.01


@dataclass
class TrainResult:
    """What `train` returns: the run folder, the last epoch's metrics and the best epoch's."""

    run_dir: Path
    metrics: dict
    best: dict
    stopped_early: bool = False


class TrainingInterrupted(KeyboardInterrupt):
    """Raised after Ctrl-C or SIGTERM once `last.pt` is saved; `resume_command` continues the run."""

    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = checkpoint
        self.resume_command = f"vggnet train --resume {checkpoint}"
        super().__init__(f"training interrupted; last.pt saved. Resume with: {self.resume_command}")


def train(*, resume: str | Path | None = None, config_file: str | Path | None = None, **settings) -> TrainResult:
    """Train or fine-tune a VGG and return the run folder and metrics.

    Args:
        resume: A run's `last.pt`: continue that run in its folder with its saved settings (only `epochs`,
            `workers` and `device` may be given again).
        config_file: A YAML file of settings; `settings` override it.
        **settings: Fields of `TrainConfig` (`data`, `model`, `epochs`, `lr`, ...). Without `data`, the
            built-in digits dataset and its defaults are used.
    """
    checkpoint = None
    if resume is not None:
        checkpoint = load_resume_checkpoint(resume)
        extra = sorted(set(settings) - set(RESUME_OVERRIDABLE)) + (["config"] if config_file else [])
        if extra:
            flags = ", ".join("--" + name.replace("_", "-") for name in extra)
            raise ValueError(
                f"--resume continues a run with its saved settings; drop {flags} (or start a new run with them)"
            )
        config = make_config({**checkpoint["config"], **settings})
        run_dir = Path(resume).expanduser().parent
    else:
        if config_file is not None:
            settings = {**load_config_file(config_file), **settings}
        config = make_config(settings)
        run_dir = None
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    distributed, device = Distributed.from_environment(config.device)
    try:
        return _Run(config, run_dir, checkpoint, distributed, device).fit()
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        distributed.close()


class _Run:
    """One training run: its data, model, optimizer and bookkeeping."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path | None,
        checkpoint: dict | None,
        distributed: Distributed,
        device: torch.device,
    ) -> None:
        self.config = config
        self.distributed = distributed
        self.device = device
        self.precision = resolve_precision(config.precision, self.device)
        self.main = distributed.is_main
        self.log = print if self.main else _silent
        self.interactive = self.main and _is_interactive()
        if config.sync_bn and distributed.enabled and device.type != "cuda":
            raise ValueError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm runs on GPUs only); drop it")
        _seed_everything(config.seed + distributed.rank, config.deterministic, self.device)

        self.splits = distributed.share(lambda: _prepare_data(config))
        if checkpoint is not None and checkpoint["classes"] != self.splits.classes:
            raise ValueError(
                f"the data's classes {self.splits.classes} differ from the checkpoint's {checkpoint['classes']}; "
                f"resume on the same data"
            )
        self.preprocess = _preprocess(config)
        self.train_set = ImageListDataset(
            self.splits.train, build_transform(self.preprocess, train=True, augment=config.augment)
        )
        self.val_set = ImageListDataset(self.splits.val, build_transform(self.preprocess))
        # The train set is shuffled per epoch and dealt out to the processes (DistributedSampler).
        self.sampler = DistributedSampler(
            self.train_set, distributed.world_size, distributed.rank, shuffle=True, seed=config.seed
        )
        self.val_batches = validation_batches(len(self.val_set), distributed.rank, distributed.world_size)
        self.drop_last = len(self.sampler) > config.batch_size
        batches = len(self.sampler) / config.batch_size
        self.steps_per_epoch = math.floor(batches) if self.drop_last else math.ceil(batches)

        self.model = _build_model(config, len(self.splits.classes), self.device)
        self.train_model = _wrap_for_training(self.model, config, distributed, self.device)
        self.optimizer = _build_optimizer(self.model, config)
        self.scheduler = _build_scheduler(self.optimizer, config, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        writer_class = _summary_writer_class() if config.tensorboard and self.main else None

        self.history: list[dict] = []
        self.best: dict | None = None
        self.bad_epochs = 0
        self.epoch = 0  # epochs completed
        self.partial = _empty_epoch_sums()  # sums of the epoch in progress (for a mid-epoch resume)
        # Only now, with the data, the weights and the extras in hand, is a new run folder made: a start that
        # fails leaves none behind.
        self.run_dir = distributed.share(lambda: run_dir or new_run_dir(config.out, config.name))
        if checkpoint is not None:
            if self.main:
                remove_stale_temporaries(self.run_dir)
            self._restore(checkpoint)
        elif self.main:
            write_config_yaml(config.to_dict(), self.run_dir / "config.yaml")
        self.writer = writer_class(log_dir=str(self.run_dir)) if writer_class is not None else None

    # ---- the loop ------------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        self._print_header()
        try:
            stopped_early = self._train_epochs()
        finally:  # on every way out: the last epoch, an early stop, a stop request, an error
            if self.writer is not None:
                self.writer.close()
        best = self.best or {}
        self.log(
            f"best val top-1 {best.get('val_top1', float('nan')):.4f} (epoch {best.get('epoch')}); "
            f"run folder {self.run_dir}"
        )
        return TrainResult(self.run_dir, dict(self.history[-1]), dict(best), stopped_early)

    def _train_epochs(self) -> bool:
        """Train the remaining epochs; True when early stopping ended the run."""
        with _StopRequest() as stop:
            while self.epoch < self.config.epochs:
                finished = self._train_one_epoch(stop)
                if not finished:
                    partial, rng_states = self._global_sums(), self.distributed.gather(capture_rng())
                    path = self.run_dir / "last.pt"
                    if self.main:
                        self._save_last(partial, rng_states)
                        print(f"\n{TrainingInterrupted(path)}", file=sys.stderr)
                    raise TrainingInterrupted(path)
                self._end_epoch()
                if self.config.patience and self.bad_epochs >= self.config.patience:
                    self.log(
                        f"early stop: validation top-1 did not improve for {self.bad_epochs} epochs "
                        f"(--patience {self.config.patience})"
                    )
                    return True
        return False

    def _train_one_epoch(self, stop: "_StopRequest") -> bool:
        """Train the current epoch from where it stands; False when a stop was requested before its end."""
        config, sums = self.config, self.partial
        self.train_model.train()
        if config.freeze_features:
            self.model.features.eval()  # frozen features keep their BatchNorm statistics too
        loader = self._train_loader(start_step=sums["step"])
        distributed = self.distributed
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=sums["step"],
            desc=f"epoch {self.epoch + 1}/{config.epochs}",
            disable=not self.interactive,
            leave=False,
            dynamic_ncols=True,
        )
        started = time.perf_counter() - sums["seconds"]
        dtype = autocast_dtype(self.precision)
        with bar:
            for images, labels, _dropped in loader:
                # Every process stops at the same step: a process that stopped alone would hang the others.
                if distributed.any(stop.requested, self.device) if distributed.enabled else stop.requested:
                    sums["seconds"] = time.perf_counter() - started
                    return False
                if not len(labels):
                    continue
                images = images.to(self.device, non_blocking=True, memory_format=torch.channels_last)
                labels = labels.to(self.device, non_blocking=True)
                try:
                    with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                        logits = self.train_model(images)
                        loss = self.criterion(logits, labels)
                except torch.OutOfMemoryError as error:
                    raise RuntimeError(
                        f"out of memory at --batch-size {config.batch_size}; lower it (e.g. --batch-size "
                        f"{max(1, config.batch_size // 2)}) or --img-size. last.pt holds the last finished epoch"
                    ) from error
                if not torch.isfinite(loss):
                    raise RuntimeError(
                        f"the loss became {loss.item()} at epoch {self.epoch + 1}, step {sums['step'] + 1}; lower "
                        f"--lr (now {config.lr}) or use --precision fp32. last.pt still holds the last good epoch"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                count = len(labels)
                sums["step"] += 1
                sums["seen"] += count
                sums["loss"] += loss.item() * count
                sums["correct"] += (logits.argmax(dim=1) == labels).sum().item()
                elapsed = time.perf_counter() - started
                bar.set_postfix(
                    loss=f"{sums['loss'] / sums['seen']:.4f}",
                    top1=f"{sums['correct'] / sums['seen']:.3f}",
                    lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                    img_s=f"{sums['seen'] / elapsed:.0f}",
                    refresh=False,
                )
                bar.update()
        sums["seconds"] = time.perf_counter() - started
        return True

    def _end_epoch(self) -> dict:
        sums = self._global_sums()
        self.distributed.broadcast_buffers(self.model)
        loader = self._loader(self.val_set, batch_sampler=self.val_batches)
        validation = evaluation_sums(self._validation_forward(), self.model.num_classes, loader, self.device)
        for value in validation.values():
            self.distributed.all_reduce_sum(value)
        evaluation = evaluation_metrics(validation)
        self.epoch += 1
        row = {
            "epoch": self.epoch,
            "train_loss": sums["loss"] / max(sums["seen"], 1),
            "train_top1": sums["correct"] / max(sums["seen"], 1),
            "val_loss": evaluation["loss"],
            "val_top1": evaluation["top1"],
            "val_top5": evaluation["top5"],
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": sums["seconds"],
            "images_per_s": sums["seen"] / max(sums["seconds"], 1e-9),
        }
        self.history.append(row)
        self.partial = _empty_epoch_sums()
        improved = self.best is None or row["val_top1"] > self.best["val_top1"]
        self.best, self.bad_epochs = (row, 0) if improved else (self.best, self.bad_epochs + 1)
        rng_states = self.distributed.gather(capture_rng())
        if self.main:
            self._write_epoch_files(row, improved, evaluation["confusion"], rng_states)
        return row

    def _write_epoch_files(self, row: dict, improved: bool, confusion: torch.Tensor, rng_states: list) -> None:
        if improved:
            atomic_save(self._model_checkpoint(row), self.run_dir / "best.pt")
            plot_confusion_matrix(
                confusion,
                self.splits.classes,
                self.run_dir / "confusion_matrix.png",
                title=f"validation, epoch {self.epoch} (top-1 {row['val_top1']:.4f})",
            )
        self._save_last(self.partial, rng_states)
        write_metrics_csv(self.history, self.run_dir / "metrics.csv")
        plot_results(self.history, self.run_dir / "results.png")
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, self.epoch)
        print(
            f"epoch {self.epoch}/{self.config.epochs}  train loss {row['train_loss']:.4f} top-1 {row['train_top1']:.4f}"
            f"  val loss {row['val_loss']:.4f} top-1 {row['val_top1']:.4f} top-5 {row['val_top5']:.4f}"
            f"  lr {row['lr']:.2e}  {row['seconds']:.1f}s {row['images_per_s']:.0f} img/s" + ("  *" if improved else "")
        )

    def _validation_forward(self):
        """The model as `vggnet eval` runs it at this run's precision: itself in eval mode at fp32, else a copy in
        eval mode with BatchNorm folded and the weights cast (which costs one copy of the weights per epoch)."""
        dtype = autocast_dtype(self.precision) or torch.float32
        model = self.model.eval() if dtype == torch.float32 else low_precision_copy(self.model, dtype, self.device)

        def forward(images: torch.Tensor) -> torch.Tensor:
            return model(inference_input(images, self.device, dtype))

        return forward

    def _global_sums(self) -> dict:
        """The epoch's running sums over all processes (seconds: this process's)."""
        sums = dict(self.partial)
        if self.distributed.enabled:
            values = torch.tensor([sums["seen"], sums["loss"], sums["correct"]], dtype=torch.float64)
            seen, loss, correct = self.distributed.all_reduce_sum(values.to(self.device)).tolist()
            sums.update(seen=int(seen), loss=loss, correct=int(correct))
        return sums

    # ---- checkpoints ---------------------------------------------------------------------------------------

    def _model_checkpoint(self, metrics: dict) -> dict:
        content = model_checkpoint(
            self.model, self.splits.classes, self.preprocess, self.config.to_dict(), self.epoch, metrics
        )
        content["runtime"] = {"device": self.device.type, "precision": self.precision}
        return content

    def _save_last(self, partial: dict, rng_states: list[dict]) -> Path:
        """last.pt, with the random state of every process (`rng`: the main one's; `rng_by_rank`: all of them, under
        torchrun), so that a resume in as many processes continues exactly."""
        content = self._model_checkpoint(self.history[-1] if self.history else {})
        content.update(
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=rng_states[0],
            progress={
                "epoch": self.epoch,
                "partial": dict(partial),
                "steps_per_epoch": self.steps_per_epoch,
                "world_size": self.distributed.world_size,
                "history": list(self.history),
                "best": self.best,
                "bad_epochs": self.bad_epochs,
            },
        )
        if len(rng_states) > 1:
            content["rng_by_rank"] = rng_states
        path = self.run_dir / "last.pt"
        atomic_save(content, path)
        return path

    def _restore(self, checkpoint: dict) -> None:
        self.model.load_state_dict(checkpoint["state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        progress = checkpoint["progress"]
        self.epoch = progress["epoch"]
        self.partial = dict(progress["partial"])
        self.history = list(progress["history"])
        self.best = progress["best"]
        self.bad_epochs = progress["bad_epochs"]
        if progress.get("world_size", 1) != self.distributed.world_size and self.partial["step"]:
            self.log(
                f"the run stopped inside epoch {self.epoch + 1} with {progress['world_size']} process(es) and resumes "
                f"with {self.distributed.world_size}: that epoch starts again"
            )
            self.partial = _empty_epoch_sums()
        if not self.main:
            self.partial.update(seen=0, loss=0.0, correct=0)  # the saved sums are all processes' already
        # The schedule counts steps: place it for this run's steps per epoch (another process count or --epochs).
        step, scheduler = self.epoch * self.steps_per_epoch + self.partial["step"], self.scheduler
        scheduler.last_epoch = step
        for group, base, factor in zip(
            self.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
        ):
            group["lr"] = base * factor(step)
        scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        by_rank = checkpoint.get("rng_by_rank", [checkpoint["rng"]])
        same_processes = len(by_rank) == self.distributed.world_size
        restore_rng(by_rank[self.distributed.rank] if same_processes else checkpoint["rng"])
        if self.main:  # the files may be ahead of last.pt if the run died between writes: make them agree
            write_metrics_csv(self.history, self.run_dir / "metrics.csv")

    # ---- data ----------------------------------------------------------------------------------------------

    def _train_loader(self, start_step: int) -> DataLoader:
        """This process's batches of this epoch, in an order fixed by (seed, epoch), skipping `start_step`."""
        self.sampler.set_epoch(self.epoch)
        order = list(self.sampler)[start_step * self.config.batch_size :]
        # Seeds the loader workers' augmentation per (seed, epoch, process).
        seed = (self.config.seed * 1_000 + self.epoch) * 1_000 + self.distributed.rank
        return self._loader(
            self.train_set,
            generator=torch.Generator().manual_seed(seed),
            batch_size=self.config.batch_size,
            sampler=order,
            drop_last=self.drop_last,
        )

    def _loader(self, dataset, generator=None, **batching) -> DataLoader:
        """A loader of `dataset` batched as `batching` says (`batch_size` and `sampler`, or `batch_sampler`)."""
        workers = self.config.workers
        return DataLoader(
            dataset,
            num_workers=workers,
            collate_fn=collate_skipping_failures,
            generator=generator,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            worker_init_fn=_ignore_stop_signals,
            multiprocessing_context="fork" if workers and sys.platform == "linux" else None,
            **batching,
        )

    def _print_header(self) -> None:
        config = self.config
        params = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        action = f"resuming at epoch {self.epoch + 1}" if self.history or self.partial["step"] else "training"
        world = self.distributed.world_size
        log = self.log
        log(f"vggnet train: {action} in {self.run_dir}")
        log(
            f"model {self.model.model_name} ({config.head} head, {params / 1e6:.2f}M parameters, "
            f"{trainable / 1e6:.2f}M trainable), {len(self.splits.classes)} classes"
            + (f", weights {config.pretrained}" if config.pretrained else "")
        )
        processes = f"{world} processes ({'nccl' if self.device.type == 'cuda' else 'gloo'}), " if world > 1 else ""
        log(
            f"{processes}device {self.device.type}, precision {self.precision}"
            f"{' (autocast)' if self.precision != 'fp32' else ''}, channels_last, {config.workers} loader workers; "
            f"{config.epochs} epochs of {self.steps_per_epoch} steps, batch {config.batch_size}"
            + (f" per process ({config.batch_size * world} in all)" if world > 1 else "")
            + f", {config.opt} lr {config.lr:g} ({config.sched}, {config.warmup_epochs} warm-up epochs)"
            + (", SyncBatchNorm" if config.sync_bn and world > 1 else "")
        )


# ---- set-up helpers ----------------------------------------------------------------------------------------


def _seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def _prepare_data(config: TrainConfig) -> DatasetSplits:
    root = Path(config.data).expanduser() if config.data is not None else digits_folder()
    splits = discover_splits(root, config.val_split, config.seed)
    sizes = f"{len(splits.classes)} classes, {len(splits.train)} train, {len(splits.val)} val"
    print(f"data {root} ({splits.layout}): {sizes}")
    if len(splits.classes) <= 30:
        print(splits.describe())
    unreadable = find_unreadable([path for path, _ in splits.train + splits.val], workers=os.cpu_count() or 1)
    if unreadable:
        listing = "\n".join(f"  {error}" for error in unreadable[:20])
        more = f"\n  ... and {len(unreadable) - 20} more" if len(unreadable) > 20 else ""
        if config.strict:
            raise ValueError(
                f"{len(unreadable)} unreadable image(s) (--strict):\n{listing}{more}\n"
                f"fix or remove them, or drop --strict to skip them"
            )
        logger.warning("skipping %d unreadable image(s):\n%s%s", len(unreadable), listing, more)
        bad = {Path(error.path) for error in unreadable}
        splits.train = [s for s in splits.train if s[0] not in bad]
        splits.val = [s for s in splits.val if s[0] not in bad]
        counts = splits.counts()
        empty = [c for i, c in enumerate(splits.classes) if not counts["train"][i] or not counts["val"][i]]
        if empty:
            raise ValueError(f"after skipping unreadable images, classes {empty} have no train or val images left")
    return splits


def _preprocess(config: TrainConfig) -> dict:
    """Resize to img_size / crop_pct and centre-crop img_size; ImageNet's mean and std (what pretrained VGG
    weights expect, and a sound default for any natural image)."""
    return {
        "img_size": config.img_size,
        "resize": round(config.img_size / config.crop_pct),
        "mean": list(IMAGENET_PREPROCESS["mean"]),
        "std": list(IMAGENET_PREPROCESS["std"]),
        "interpolation": IMAGENET_PREPROCESS["interpolation"],
    }


def _build_model(config: TrainConfig, num_classes: int, device: torch.device) -> VGG:
    model = create_model(
        config.model,
        num_classes=num_classes,
        head=config.head,
        dropout=config.dropout,
        width_mult=config.width_mult,
        pretrained=config.pretrained,
    )
    if config.freeze_features:
        model.features.requires_grad_(False)
    return model.to(device=device, memory_format=torch.channels_last)


def _wrap_for_training(model: VGG, config: TrainConfig, distributed: Distributed, device: torch.device) -> nn.Module:
    """The module the training steps call: the model itself, or under torchrun the model wrapped in DDP (with
    SyncBatchNorm for --sync-bn). Checkpoints always save the bare model, so they load anywhere."""
    if not distributed.enabled:
        return model
    if config.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _build_optimizer(model: VGG, config: TrainConfig) -> torch.optim.Optimizer:
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


def _build_scheduler(optimizer, config: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step linear warm-up over `warmup_epochs`, then cosine decay to FINAL_LR_FRACTION (or constant)."""
    warmup = config.warmup_epochs * steps_per_epoch
    total = config.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.sched == "none":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def validation_batches(count: int, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """This process's validation batches of a validation set of `count` images: the batches `vggnet eval` forms
    (INFERENCE_BATCH_SIZE images, in the data's order), so that each image meets the same batch and is computed
    exactly as eval computes it. Under torchrun the processes take whole batches in turn, so that all of them
    together count each image exactly once."""
    size = INFERENCE_BATCH_SIZE
    batches = [list(range(start, min(start + size, count))) for start in range(0, count, size)]
    return batches[rank::world_size]


def _summary_writer_class():
    """TensorBoard's SummaryWriter, checked at set-up: a missing package is named before anything is written."""
    require("tensorboard", "tensorboard", "--tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter


def _is_interactive() -> bool:
    """Progress bars on a terminal; under CI or a pipe, the per-epoch summaries only."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def _ignore_stop_signals(_worker_id: int) -> None:
    """Loader workers leave Ctrl-C and SIGTERM to the training process, which stops them cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _silent(*_args, **_kwargs) -> None:
    """What processes other than the main one print: nothing."""


def _empty_epoch_sums() -> dict:
    return {"step": 0, "seen": 0, "loss": 0.0, "correct": 0, "seconds": 0.0}


class _StopRequest(contextlib.AbstractContextManager):
    """Turns the first Ctrl-C or SIGTERM into a request to stop at the next batch boundary (a second Ctrl-C
    interrupts at once). Outside the main thread, signals stay as they are."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this batch (Ctrl-C again to stop at once)...", file=sys.stderr)

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
