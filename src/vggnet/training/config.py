"""The training configuration: one validated dataclass, filled from defaults, a YAML file and flags (in that order).

    vggnet train --config my.yaml --epochs 20      # the flag overrides the file

A bad value raises ValueError naming the flag and the fix. With no `--data`, the built-in digits dataset is used
with its own defaults (`DIGITS_DEFAULTS`) for every setting the user did not give.
"""

import contextlib
import typing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

# Light imports only: `vggnet train --help` reads the defaults here without importing torch.
from ..choices import AUGMENTS, DEVICES, PRECISIONS
from ..models.cfgs import HEADS, MIN_INPUT_SIZE
from ..models.registry import list_models

OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("cosine", "none")
# Defaults that depend on the optimizer: learning rate and weight decay.
OPTIMIZER_DEFAULTS = {"sgd": {"lr": 0.01, "weight_decay": 5e-4}, "adamw": {"lr": 1e-3, "weight_decay": 0.05}}

# The built-in digits (8x8 images): a compact VGG at 32x32, no cropping, small enough to train on a CPU.
DIGITS_DEFAULTS = {
    "model": "vgg11_bn",
    "head": "compact",
    "img_size": 32,
    "crop_pct": 1.0,
    "augment": "none",
    "epochs": 10,
    "batch_size": 64,
    "lr": 0.05,
    "warmup_epochs": 1,
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Field `x_y` is flag `--x-y`."""

    data: str | None = None
    val_split: float = 0.2
    model: str = "vgg16_bn"
    pretrained: str | None = None
    head: str = "classic"
    dropout: float = 0.5
    width_mult: float = 1.0
    freeze_features: bool = False
    sync_bn: bool = False
    epochs: int = 30
    batch_size: int = 32
    lr: float | None = None
    opt: str = "sgd"
    momentum: float = 0.9
    weight_decay: float | None = None
    sched: str = "cosine"
    warmup_epochs: int = 1
    label_smoothing: float = 0.0
    img_size: int = 224
    crop_pct: float = 0.875
    augment: str = "basic"
    precision: str = "auto"
    workers: int | None = None
    seed: int = 0
    deterministic: bool = False
    patience: int = 0
    device: str = "auto"
    out: str = "runs/train"
    name: str = "exp"
    tensorboard: bool = False
    strict: bool = False

    def __post_init__(self) -> None:
        _check_types(self)
        _choice("model", self.model, list_models(include_aliases=True))
        _choice("head", self.head, HEADS)
        _choice("opt", self.opt, OPTIMIZERS)
        _choice("sched", self.sched, SCHEDULERS)
        _choice("augment", self.augment, AUGMENTS)
        _choice("precision", self.precision, PRECISIONS)
        _choice("device", self.device, DEVICES)
        _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("img_size", self.img_size, MIN_INPUT_SIZE, f"VGG's five max-pools need at least {MIN_INPUT_SIZE}")
        _at_least("warmup_epochs", self.warmup_epochs, 0)
        _at_least("patience", self.patience, 0, "0 turns early stopping off")
        if self.workers is not None:
            _at_least("workers", self.workers, 0)
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"--lr must be positive, got {self.lr}; try {OPTIMIZER_DEFAULTS[self.opt]['lr']}")
        for name, value in (("val_split", self.val_split), ("dropout", self.dropout)):
            if not 0 <= value < 1:
                raise ValueError(f"--{_flag(name)} must be in [0, 1), got {value}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}; 0.1 is usual")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"--crop-pct must be in (0, 1], got {self.crop_pct}; 0.875 is usual, 1 for no crop")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ValueError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not self.width_mult > 0:
            raise ValueError(f"--width-mult must be positive, got {self.width_mult}; 1.0 is the published network")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"--name {self.name!r} must be a plain folder name such as 'exp'")

    def resolved(self) -> "TrainConfig":
        """A copy with the optimizer-dependent defaults (lr, weight decay) and the worker count filled in."""
        from ..runtime import default_workers  # runtime imports torch, which the config itself does not need

        defaults = OPTIMIZER_DEFAULTS[self.opt]
        return replace(
            self,
            lr=self.lr if self.lr is not None else defaults["lr"],
            weight_decay=self.weight_decay if self.weight_decay is not None else defaults["weight_decay"],
            workers=self.workers if self.workers is not None else default_workers(),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def make_config(settings: dict) -> TrainConfig:
    """Build the resolved config from user settings (a YAML file's and the flags' values, flags last).

    With no `data`, the digits defaults fill every setting not given.
    """
    unknown = sorted(set(settings) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid ones: {', '.join(f.name for f in fields(TrainConfig))}")
    preset = DIGITS_DEFAULTS if settings.get("data") is None else {}
    return TrainConfig(**{**preset, **_coerce_numbers(settings)}).resolved()


def load_config_file(path: str | Path) -> dict:
    """Read a YAML config file of TrainConfig fields (`batch_size: 64`, or `batch-size: 64`)."""
    import yaml  # here, not at the top: `vggnet train --help` reads this module and has no use for it

    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"--config {str(path)!r} does not exist; check the path")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"--config {path} is not valid YAML: {error}") from error
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ValueError(f"--config {path} must hold a mapping of settings, such as 'epochs: 20'")
    return {str(key).replace("-", "_"): value for key, value in content.items()}


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _field_kind(field) -> tuple[type, bool]:
    """(base type, whether None is allowed) of a field annotated `T` or `T | None`."""
    args = typing.get_args(field.type) or (field.type,)
    return next(a for a in args if a is not type(None)), type(None) in args


def _check_types(config: TrainConfig) -> None:
    for field in fields(config):
        value = getattr(config, field.name)
        kind, optional = _field_kind(field)
        if value is None and optional:
            continue
        accepted = (int, float) if kind is float else kind
        if not isinstance(value, accepted) or (kind is not bool and isinstance(value, bool)):
            raise ValueError(f"--{_flag(field.name)} must be {kind.__name__}, got {value!r}")


def _coerce_numbers(settings: dict) -> dict:
    """YAML reads `1e-3` as a string; turn such strings into floats for float settings."""
    kinds = {field.name: _field_kind(field)[0] for field in fields(TrainConfig)}
    result = dict(settings)
    for name, value in settings.items():
        if kinds.get(name) is float and isinstance(value, str):
            with contextlib.suppress(ValueError):  # if not a number, the type check names the flag
                result[name] = float(value)
    return result


def _choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown --{_flag(name)} {value!r}; choose one of: {', '.join(choices)}")


def _at_least(name: str, value: int, minimum: int, why: str = "") -> None:
    if value < minimum:
        raise ValueError(f"--{_flag(name)} must be at least {minimum}, got {value}" + (f" ({why})" if why else ""))
