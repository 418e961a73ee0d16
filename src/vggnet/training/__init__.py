"""Training: the validated config, the set-up, the epoch loop (single process and DDP share one path), the public
step and validation pass, checkpoints and the run folder.

The names below are imported on first use, so that the config (which `vggnet train --help` reads) comes without
torch.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {
    ".config": ["DIGITS_DEFAULTS", "TrainConfig", "load_config_file", "make_config"],
    ".loop": ["TrainResult", "train"],
    ".signals": ["TrainingInterrupted"],
    ".step": ["StepOutput", "train_step", "validate"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time `__getattr__` imports each name on first use
    from .config import DIGITS_DEFAULTS, TrainConfig, load_config_file, make_config
    from .loop import TrainResult, train
    from .signals import TrainingInterrupted
    from .step import StepOutput, train_step, validate
