"""Training: the validated config, the loop (single process now, DDP later through the same path), checkpoints
and the run folder."""

from .config import DIGITS_DEFAULTS, TrainConfig, load_config_file, make_config
from .loop import TrainingInterrupted, TrainResult, train

__all__ = [
    "DIGITS_DEFAULTS",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "load_config_file",
    "make_config",
    "train",
]
