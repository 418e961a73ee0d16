"""The training loop behind `vggnet train` and `vggnet.train(...)`.

    vggnet train                                    # the built-in digits (README: measured times)
    vggnet train --data ~/flowers --model vgg16_bn --pretrained imagenet --epochs 20
    vggnet train --resume runs/train/exp/last.pt    # continue where it stopped

Each epoch trains, validates, then writes `last.pt` (and `best.pt` when validation top-1 improved),
`metrics.csv` and `results.png` into the run folder. Ctrl-C (or SIGTERM) stops at the next batch boundary,
saves `last.pt` and prints the command that resumes.

Validation runs the model as `vggnet eval` does (`models.inference_form`: BatchNorm folded, the weights cast, the
ReLUs fused on the CPU; the same batches), so that `vggnet eval` of `best.pt` on the validation folder reproduces
the top-1, top-5 and loss it records, at the precision the run used (`runtime.precision` in the checkpoint).

The set-up lives in `setup.py`, one step and the validation pass in `step.py`, stop signals in `signals.py`.
"""

import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ..atomic import atomic_save
from ..data import Preprocess
from ..models.loading import weights_keyword
from ..outputs import output_folder
from ..plots import plot_confusion_matrix, plot_results
from ..runtime import resolve_precision
from .checkpoint import (
    capture_rng,
    last_checkpoint,
    load_resume_checkpoint,
    model_checkpoint,
    remove_stale_temporaries,
    restore_training_state,
)
from .config import TrainConfig, load_config_file, make_config
from .distributed import Distributed
from .run_dir import new_run_dir, write_config_yaml, write_metrics_csv
from .setup import (
    TrainingData,
    build_model,
    build_optimizer,
    build_scheduler,
    describe_run,
    prepare_data,
    seed_everything,
    summary_writer_class,
    warmup_warning,
    wrap_for_training,
)
from .signals import StopRequest, TrainingInterrupted
from .step import train_step, validate

logger = logging.getLogger("vggnet")

# Steps between reads of the training losses back from the device (and at an epoch's end or a stop): a read waits
# for the device to finish its queued work, which, every step, would leave it idle while the host catches up.
READ_INTERVAL = 20


@dataclass
class TrainResult:
    """What `train` returns (its example shows one): the run folder, the last epoch's metrics and the best epoch's.

    >>> import dataclasses, vggnet
    >>> [field.name for field in dataclasses.fields(vggnet.TrainResult)]
    ['run_dir', 'metrics', 'best', 'stopped_early']
    """

    run_dir: Path
    metrics: dict
    best: dict
    stopped_early: bool = False


def train(*, resume: str | Path | None = None, config_file: str | Path | None = None, **settings) -> TrainResult:
    """Train or fine-tune a VGG and return the run folder and metrics.

    >>> import itertools, vggnet
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> for colour, i in itertools.product(("tomato", "teal"), range(5)):  # two classes; 1 of 5 held out for val
    ...     Path("colours", colour).mkdir(parents=True, exist_ok=True)
    ...     Image.new("RGB", (32, 32), colour).save(f"colours/{colour}/{i}.png")
    >>> result = vggnet.train(data="colours", model="vgg11_bn", width_mult=0.125, head="compact", img_size=32,
    ...                       epochs=1, batch_size=4, workers=0, device="cpu")
    data colours (class folders, 20% held out per class): 2 classes, 8 train, 2 val
    ...
    best val top-1 ... (epoch 1); run folder runs/train/exp
    >>> result.run_dir.as_posix(), result.best["epoch"], result.stopped_early, sorted(result.metrics)[-3:]
    ('runs/train/exp', 1, False, ['val_loss', 'val_top1', 'val_top5'])
    >>> sorted(path.name for path in result.run_dir.iterdir())
    ['best.pt', 'config.yaml', 'confusion_matrix.png', 'last.pt', 'metrics.csv', 'results.png']

    Args:
        resume: A run's `last.pt`: continue that run in its folder with its saved settings (only `epochs`,
            `workers`, `device`, and where the data is now, `data` and `image_root`, may be given again).
        config_file: A YAML file of settings; `settings` override it.
        **settings: Fields of `TrainConfig` (`data`, `model`, `epochs`, `lr`, ...). Without `data`, the
            built-in digits dataset and its defaults are used.
    """
    checkpoint = None
    if resume is not None:
        checkpoint = load_resume_checkpoint(resume, settings, config_file)
        config = make_config({**checkpoint["config"], **settings})
        done = checkpoint["progress"]["epoch"]
        if done >= config.epochs:
            raise ValueError(
                f"--resume {resume}: the run has finished {done} of its {config.epochs} epochs; to train it longer, "
                f"pass --epochs with more than {done}"
            )
        run_dir = Path(resume).expanduser().parent
    else:
        if config_file is not None:
            settings = {**load_config_file(config_file), **settings}
        config = make_config(settings)
        # Before the data scan, which can take minutes: where the run goes, and the weights it starts from.
        output_folder(config.out, "--out")
        weights_keyword(config.pretrained)  # a weights file that is not there
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
        # What config.yaml and the checkpoints hold: the data's paths absolute, so that a resume finds it from anywhere.
        self.saved_config = config.with_absolute_paths().to_dict()
        self.distributed = distributed
        self.device = device
        self.precision = resolve_precision(config.precision, self.device)
        self.main = distributed.is_main
        self.log = print if self.main else _silent
        self.interactive = self.main and _is_interactive()
        if config.sync_bn and distributed.enabled and device.type != "cuda":
            raise ValueError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm runs on GPUs only); drop it")
        seed_everything(config.seed + distributed.rank, config.deterministic, self.device)

        splits = prepare_data(config, distributed)
        if checkpoint is not None and checkpoint["classes"] != splits.classes:
            raise ValueError(
                f"the data's classes {splits.classes} differ from the checkpoint's {checkpoint['classes']}; "
                f"resume on the same data"
            )
        # What pretrained VGG weights expect, and a sound default for any natural image.
        self.preprocess = Preprocess.imagenet(config.img_size, config.crop_pct)
        self.data = TrainingData(splits, self.preprocess, config, distributed, self.device)
        self.classes, self.steps_per_epoch = splits.classes, self.data.steps_per_epoch

        # A resumed run's weights come from its last.pt: the pretrained ones it started from are not read again.
        self.model = build_model(config, len(self.classes), self.device, pretrained=checkpoint is None)
        self.train_model = wrap_for_training(self.model, config, distributed, self.device)
        self.optimizer = build_optimizer(self.model, config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        writer_class = summary_writer_class() if config.tensorboard and self.main else None

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
            write_config_yaml(self.saved_config, self.run_dir / "config.yaml")
        # Placed at the step the run is at, counted in this run's steps per epoch (another process count or
        # --epochs than the run that saved last.pt).
        step = self.epoch * self.steps_per_epoch + self.partial["step"]
        self.scheduler = build_scheduler(self.optimizer, config, self.steps_per_epoch, start_step=step)
        self.writer = writer_class(log_dir=str(self.run_dir)) if writer_class is not None else None

    # ---- the loop ------------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        action = f"resuming at epoch {self.epoch + 1}" if self.history or self.partial["step"] else "training"
        self.log(f"vggnet train: {action} in {self.run_dir}")
        world_size = self.distributed.world_size
        self.log(describe_run(self.config, self.model, self.precision, self.device, world_size, self.steps_per_epoch))
        if self.main and (warning := warmup_warning(self.config)):
            logger.warning(warning)
        try:
            stopped_early = self._train_epochs()
        finally:  # on every way out: the last epoch, an early stop, a stop request, an error
            self.data.close()
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
        with StopRequest(announce=self.main) as stop:
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

    def _train_one_epoch(self, stop: StopRequest) -> bool:
        """Train the current epoch from where it stands; False when a stop was requested before its end."""
        config, sums = self.config, self.partial
        self.train_model.train()
        if config.freeze_features:
            self.model.features.eval()  # frozen features keep their BatchNorm statistics too
        loader = self.data.train_loader(self.epoch, start_step=sums["step"])
        distributed = self.distributed
        bar = tqdm(total=self.steps_per_epoch, initial=sums["step"], desc=f"epoch {self.epoch + 1}/{config.epochs}",
                   disable=not self.interactive, leave=False, dynamic_ncols=True)  # fmt: skip
        started = time.perf_counter() - sums["seconds"]
        unread = []  # (loss, top-1 hits, batch size) of the steps since the last read, the first two on the device
        with bar:
            for images, labels, _dropped in loader:
                # Every process stops at the same step: a process that stopped alone would hang the others.
                if distributed.any(stop.requested, self.device) if distributed.enabled else stop.requested:
                    self._read_steps(unread)
                    sums["seconds"] = time.perf_counter() - started
                    return False
                images, labels = self.data.to_device(images, labels, self.epoch, sums["step"])
                if not len(labels):
                    continue
                try:
                    loss, logits = train_step(
                        self.train_model, images, labels, self.optimizer, loss_fn=self.criterion,
                        precision=self.precision, scaler=self.scaler, scheduler=self.scheduler,
                    )  # fmt: skip
                except torch.OutOfMemoryError as error:
                    raise RuntimeError(
                        f"out of memory at --batch-size {config.batch_size}; lower it (e.g. --batch-size "
                        f"{max(1, config.batch_size // 2)}) or --img-size. last.pt holds the last finished epoch"
                    ) from error
                unread.append((loss, (logits.argmax(dim=1) == labels).sum(), len(labels)))
                sums["step"] += 1
                sums["seen"] += len(labels)
                if sums["step"] % READ_INTERVAL == 0 or sums["step"] == self.steps_per_epoch:
                    self._read_steps(unread)
                    bar.set_postfix(
                        loss=f"{sums['loss'] / sums['seen']:.4f}",
                        top1=f"{sums['correct'] / sums['seen']:.3f}",
                        lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                        img_s=f"{sums['seen'] / (time.perf_counter() - started):.0f}",
                        refresh=False,
                    )
                bar.update()
        self._read_steps(unread)
        sums["seconds"] = time.perf_counter() - started
        return True

    def _read_steps(self, unread: list) -> None:
        """Add the unread steps' losses and hits to the epoch's sums (one wait for the device), in step order;
        a non-finite loss ends the run before anything is saved."""
        if not unread:
            return
        losses, hits, counts = zip(*unread, strict=True)
        sums, first_step = self.partial, self.partial["step"] - len(unread) + 1
        for offset, (loss, correct, count) in enumerate(
            zip(torch.stack(losses).tolist(), torch.stack(hits).tolist(), counts, strict=True)
        ):
            if not math.isfinite(loss):
                saved = (
                    "last.pt still holds the last good epoch"
                    if (self.run_dir / "last.pt").exists()
                    else "no epoch had finished, so nothing was saved"
                )
                raise RuntimeError(
                    f"the loss became {loss} at epoch {self.epoch + 1}, step {first_step + offset}; lower --lr "
                    f"(now {self.config.lr}) or use --precision fp32. {saved}"
                )
            sums["loss"] += loss * count
            sums["correct"] += correct
        unread.clear()

    def _end_epoch(self) -> dict:
        sums = self._global_sums()
        self.distributed.broadcast_buffers(self.model)
        loader = self.data.val_loader()
        evaluation = validate(self.model, loader, precision=self.precision, distributed=self.distributed)
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
                self.classes,
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
        top5 = f" top-5 {row['val_top5']:.4f}" if len(self.classes) > 5 else ""  # always 1 with 5 classes or fewer
        print(
            f"epoch {self.epoch}/{self.config.epochs}  train loss {row['train_loss']:.4f} top-1 {row['train_top1']:.4f}"
            f"  val loss {row['val_loss']:.4f} top-1 {row['val_top1']:.4f}{top5}"
            f"  lr {row['lr']:.2e}  {row['seconds']:.1f}s {row['images_per_s']:.0f} img/s" + ("  *" if improved else "")
        )

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
        runtime = {"device": self.device.type, "precision": self.precision}
        preprocess = self.preprocess.to_dict()
        return model_checkpoint(self.model, self.classes, preprocess, self.saved_config, self.epoch, metrics, runtime)

    def _save_last(self, partial: dict, rng_states: list[dict]) -> None:
        progress = {
            "epoch": self.epoch,
            "partial": dict(partial),
            "steps_per_epoch": self.steps_per_epoch,
            "world_size": self.distributed.world_size,
            "history": list(self.history),
            "best": self.best,
            "bad_epochs": self.bad_epochs,
        }
        content = self._model_checkpoint(self.history[-1] if self.history else {})
        content = last_checkpoint(content, self.optimizer, self.scheduler, self.scaler, rng_states, progress)
        atomic_save(content, self.run_dir / "last.pt")

    def _restore(self, checkpoint: dict) -> None:
        distributed = self.distributed
        restore_training_state(
            checkpoint, self.model, self.optimizer, self.scaler, distributed.rank, distributed.world_size
        )
        progress = checkpoint["progress"]
        self.epoch, self.partial, self.history = progress["epoch"], dict(progress["partial"]), list(progress["history"])
        self.best, self.bad_epochs = progress["best"], progress["bad_epochs"]
        if progress.get("world_size", 1) != distributed.world_size and self.partial["step"]:
            self.log(
                f"the run stopped inside epoch {self.epoch + 1} with {progress['world_size']} process(es) and resumes "
                f"with {distributed.world_size}: that epoch starts again"
            )
            self.partial = _empty_epoch_sums()
        if not self.main:
            self.partial.update(seen=0, loss=0.0, correct=0)  # the saved sums are all processes' already
        if self.main:  # the files may be ahead of last.pt if the run died between writes: make them agree
            write_metrics_csv(self.history, self.run_dir / "metrics.csv")


def _is_interactive() -> bool:
    """Progress bars on a terminal; under CI or a pipe, the per-epoch summaries only."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def _silent(*_args, **_kwargs) -> None:
    """What processes other than the main one print: nothing."""


def _empty_epoch_sums() -> dict:
    return {"step": 0, "seen": 0, "loss": 0.0, "correct": 0, "seconds": 0.0}
