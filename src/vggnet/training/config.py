"""The training configuration: one validated dataclass, filled from defaults, a YAML file and flags (in that order).

    vggnet train --config my.yaml --epochs 20      # the flag overrides the file

A bad value raises ValueError naming the flag and the fix. With no `--data`, the built-in digits dataset is used
with its own defaults (`DIGITS_DEFAULTS`) for every setting the user did not give. Each field also carries its
flag's help, choices and metavar, from which the CLI makes `vggnet train`'s flags: a new setting is one line here.
"""

import contextlib
import typing
from dataclasses import Field, asdict, dataclass, field, fields, replace
from pathlib import Path

# Light imports only: `vggnet train --help` reads the defaults here without importing torch.
from ..choices import AUGMENTS, CACHES, DECODE_PLACES, DEVICES, PRECISIONS
from ..models.cfgs import HEADS, MIN_INPUT_SIZE
from ..models.registry import list_models

OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("cosine", "none")
# Defaults that depend on the optimizer: learning rate and weight decay.
OPTIMIZER_DEFAULTS = {"sgd": {"lr": 0.01, "weight_decay": 5e-4}, "adamw": {"lr": 1e-3, "weight_decay": 0.05}}

# The built-in digits (8x8 images): a compact VGG at 32x32, no cropping, small enough to train on a CPU; decoded in
# the training process, where the tiny PNGs cost little and a loader process costs more than it saves (on a 2-core
# AVX-512 EPYC, the whole run with one: 59.9 and 71.2 s, against 57.6 and 65.9 s without, interleaved), and once:
# kept in memory (0.3 MB), reading and decoding them cost 0.15 s an epoch.
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
    "workers": 0,
    "cache": "ram",
}


def _setting(
    default, help: str, *, choices: tuple[str, ...] | None = None, metavar: str | None = None, unset: str | None = None
) -> Field:
    """A `TrainConfig` field with what its flag shows: `help` (the CLI appends the default), the `choices` that the
    flag and validation both accept, the flag's `metavar`, and `unset`: what a default of None means."""
    given = {"choices": choices, "metavar": metavar, "unset": unset}
    return field(default=default, metadata={"help": help, **{key: value for key, value in given.items() if value}})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Field `x_y` is flag `--x-y`; its metadata holds the flag's help.

    >>> import vggnet
    >>> config = vggnet.TrainConfig(data="~/flowers", model="vgg16_bn", pretrained="imagenet", epochs=20)
    >>> config.epochs, config.lr  # None: the optimizer's default, which `resolved` fills in
    (20, None)
    >>> config.resolved().lr, config.resolved().weight_decay
    (0.01, 0.0005)
    >>> vggnet.TrainConfig(epochs=0)
    Traceback (most recent call last):
    ValueError: --epochs must be at least 1, got 0
    >>> vggnet.TrainConfig(model="vgg17")
    Traceback (most recent call last):
    ValueError: unknown --model 'vgg17'; choose one of: vgg11, vgg11_bn, ...
    >>> vggnet.train(**config.to_dict())  # doctest: +SKIP
    """

    data: str | None = _setting(
        None, "image folder, or a .csv or .parquet table of paths and labels", metavar="DIR|TABLE",
        unset="the built-in digits",
    )  # fmt: skip
    val_split: float = _setting(0.2, "held out per class if the data has no val split", metavar="F")
    path_column: str | None = _setting(
        None, "the image paths' column of a --data table", metavar="NAME",
        unset="path, or filename in a table without path",
    )  # fmt: skip
    label_column: str = _setting("label", "the labels' column of a --data table", metavar="NAME")
    split_column: str | None = _setting(
        None, "a --data table's column marking each row train or val (or neither: left out)", metavar="NAME",
        unset="none",
    )  # fmt: skip
    image_root: str | None = _setting(
        None, "the folder a --data table's relative paths are relative to", metavar="DIR",
        unset="the table's folder, or its images/",
    )  # fmt: skip
    model: str = _setting("vgg16_bn", f"one of: {', '.join(list_models(include_aliases=True))}", metavar="NAME")
    pretrained: str | None = _setting(
        None, "start from these weights", metavar="imagenet|PATH", unset="random initialisation"
    )
    head: str = _setting("classic", "classifier head", choices=HEADS)
    dropout: float = _setting(0.5, "dropout in the head")
    width_mult: float = _setting(1.0, "multiplies every convolution's channels")
    freeze_features: bool = _setting(False, "train the head only")
    sync_bn: bool = _setting(False, "under torchrun, synchronise BatchNorm statistics across processes")
    epochs: int = _setting(30, "epochs")
    batch_size: int = _setting(32, "images per step")
    lr: float | None = _setting(None, "peak learning rate")  # None: the optimizer's (OPTIMIZER_DEFAULTS)
    opt: str = _setting("sgd", "optimizer", choices=OPTIMIZERS)
    momentum: float = _setting(0.9, "SGD momentum")
    weight_decay: float | None = _setting(None, "on weights, not biases or norms")  # None: the optimizer's
    sched: str = _setting("cosine", "learning-rate schedule after warm-up", choices=SCHEDULERS)
    warmup_epochs: int = _setting(1, "epochs of linear warm-up")
    label_smoothing: float = _setting(0.0, "label smoothing")
    img_size: int = _setting(224, "square input side")
    crop_pct: float = _setting(0.875, "evaluation centre crop, fraction of the resized image")
    augment: str = _setting("basic", "training augmentation", choices=AUGMENTS)
    precision: str = _setting("auto", "auto: bf16 if the hardware has it, or fp32", choices=PRECISIONS)
    workers: int | None = _setting(None, "data-loading processes", unset="one per spare core")
    decode: str = _setting(
        "workers",
        "where training images are decoded and augmented: the loader processes, or the training device (nvJPEG "
        "on a GPU, for when the CPU's cores cannot keep up with it)",
        choices=DECODE_PLACES,
    )
    cache: str = _setting(
        "none",
        "ram: decode every image once, before the first epoch, and keep the pixels in memory for the run if they "
        "take at most half the memory available, so that epochs skip reading and decoding them; with --decode "
        "device, the validation images",
        choices=CACHES,
    )
    seed: int = _setting(0, "random seed")
    deterministic: bool = _setting(False, "use deterministic algorithms (slower)")
    patience: int = _setting(0, "stop after N epochs with no better val top-1, 0: never")
    device: str = _setting("auto", "auto: CUDA when available", choices=DEVICES)
    out: str = _setting("runs/train", "runs folder", metavar="DIR")
    name: str = _setting("exp", "run name, numbered when taken: exp, exp2, ...")
    tensorboard: bool = _setting(False, "also write TensorBoard event files")
    strict: bool = _setting(False, "refuse unreadable images before training instead of skipping them")
    no_check: bool = _setting(
        False, "skip decoding every image before training (a bad file is then skipped, with a warning, when read)"
    )

    def __post_init__(self) -> None:
        _check_types(self)
        _choice("model", self.model, list_models(include_aliases=True))
        for setting in fields(self):
            if "choices" in setting.metadata:
                _choice(setting.name, getattr(self, setting.name), setting.metadata["choices"])
        _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("img_size", self.img_size, MIN_INPUT_SIZE, f"VGG's five max-pools need at least {MIN_INPUT_SIZE}")
        _at_least("warmup_epochs", self.warmup_epochs, 0)
        _at_least("patience", self.patience, 0, "0 turns early stopping off")
        if self.workers is not None:
            _at_least("workers", self.workers, 0)
        if not 0 <= self.seed < 2**32:  # NumPy's generator, which the run seeds too, takes 32 bits
            raise ValueError(f"--seed must be in [0, 2**32), got {self.seed}; any integer in it, e.g. 0")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"--lr must be positive, got {self.lr}; try {OPTIMIZER_DEFAULTS[self.opt]['lr']}")
        if not 0 <= self.val_split < 1:  # 0 holds nothing out: for data with a val split of its own (hold_out)
            raise ValueError(
                f"--val-split must be in [0, 1), got {self.val_split}; e.g. 0.2 (0 only for data with a val split)"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}; 0.1 is usual")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"--crop-pct must be in (0, 1], got {self.crop_pct}; 0.875 is usual, 1 for no crop")
        if self.strict and self.no_check:
            raise ValueError("--strict refuses unreadable images, which --no-check does not look for: drop one")
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

    def with_absolute_paths(self) -> "TrainConfig":
        """A copy whose data paths (`data`, `image_root`) are absolute: what a run saves in its config.yaml and
        checkpoints, so that `--resume` and `--config` find the data from any working folder."""
        absolute = {
            name: str(Path(value).expanduser().absolute())
            for name in ("data", "image_root")
            if (value := getattr(self, name)) is not None
        }
        return replace(self, **absolute)


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


def flag(name: str) -> str:
    """The flag of setting `name`: `batch_size` -> `--batch-size`."""
    return "--" + name.replace("_", "-")


def setting_type(setting: Field) -> tuple[type, bool]:
    """(base type, whether None is allowed) of a `TrainConfig` field annotated `T` or `T | None`."""
    args = typing.get_args(setting.type) or (setting.type,)
    return next(a for a in args if a is not type(None)), type(None) in args


def shown_default(name: str) -> str | None:
    """The default of setting `name` as `vggnet train --help` shows it (None for a switch): `30; without --data: 10`
    where the built-in digits use their own, `sgd 0.01, adamw 0.001` where it depends on the optimizer, or
    `default: ...` saying what None means."""
    setting = next(setting for setting in fields(TrainConfig) if setting.name == name)
    if setting_type(setting)[0] is bool:
        return None
    shown = _shown_value(setting, setting.default)
    if DIGITS_DEFAULTS.get(name, setting.default) != setting.default:
        return f"{shown}; without --data: {_shown_value(setting, DIGITS_DEFAULTS[name])}"
    return shown


def _shown_value(setting: Field, value: object) -> str:
    if value is None and "unset" in setting.metadata:
        return f"default: {setting.metadata['unset']}"
    if value is None and all(setting.name in defaults for defaults in OPTIMIZER_DEFAULTS.values()):
        return ", ".join(f"{opt} {defaults[setting.name]:g}" for opt, defaults in OPTIMIZER_DEFAULTS.items())
    return str(value)


def _check_types(config: TrainConfig) -> None:
    for setting in fields(config):
        value = getattr(config, setting.name)
        kind, optional = setting_type(setting)
        if value is None and optional:
            continue
        accepted = (int, float) if kind is float else kind
        if not isinstance(value, accepted) or (kind is not bool and isinstance(value, bool)):
            raise ValueError(f"{flag(setting.name)} must be {kind.__name__}, got {value!r}")


def _coerce_numbers(settings: dict) -> dict:
    """YAML reads `1e-3` as a string; turn such strings into floats for float settings."""
    kinds = {setting.name: setting_type(setting)[0] for setting in fields(TrainConfig)}
    result = dict(settings)
    for name, value in settings.items():
        if kinds.get(name) is float and isinstance(value, str):
            with contextlib.suppress(ValueError):  # if not a number, the type check names the flag
                result[name] = float(value)
    return result


def _choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {flag(name)} {value!r}; choose one of: {', '.join(choices)}")


def _at_least(name: str, value: int, minimum: int, why: str = "") -> None:
    if value < minimum:
        raise ValueError(f"{flag(name)} must be at least {minimum}, got {value}" + (f" ({why})" if why else ""))
