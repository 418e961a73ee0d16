"""Training: the validated config, the loop (single process now, DDP later through the same path), checkpoints
and the run folder."""

from .config import DIGITS_DEFAULTS, TrainConfig, load_config_file, make_config
from .loop import TrainingInterrupted, TrainResult, evaluate, train

__all__ = [
    "DIGITS_DEFAULTS",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "evaluate",
    "load_config_file",
    "make_config",
    "train",
]
