"""The registry: every model name vggnet knows, with its architecture. A new variant is a line of data.

>>> from vggnet.models.registry import list_models
>>> list_models()
['vgg11', 'vgg11_bn', 'vgg13', 'vgg13_bn', 'vgg16', 'vgg16_bn', 'vgg19', 'vgg19_bn']
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .cfgs import CFGS

if TYPE_CHECKING:  # torch is imported when a model is built, not when names are listed (`vggnet --help`)
    from torch import nn

    from .vgg import VGG


@dataclass(frozen=True)
class Architecture:
    """A registered variant: its config list's key in `CFGS` and the norm layer after each convolution."""

    cfg: str
    norm_layer: Callable[[int], "nn.Module"] | None = None


_REGISTRY: dict[str, Architecture] = {}

# The reference repository's names for the four depths.
ALIASES = {"vgg_tiny": "vgg11", "vgg_small": "vgg13", "vgg": "vgg16", "vgg_big": "vgg19"}


def register_model(name: str, architecture: Architecture) -> None:
    """Add a variant under `name`; registering a taken name is an error."""
    if name in _REGISTRY or name in ALIASES:
        raise ValueError(f"model name {name!r} is already registered; pick another name")
    if architecture.cfg not in CFGS:
        raise ValueError(f"unknown config {architecture.cfg!r}; add it to CFGS first (known: {', '.join(CFGS)})")
    _REGISTRY[name] = architecture


def _batch_norm(channels: int) -> "nn.Module":
    """`nn.BatchNorm2d(channels)`, the norm layer of the `_bn` variants."""
    from torch import nn

    return nn.BatchNorm2d(channels)


for _cfg in CFGS:
    register_model(_cfg, Architecture(_cfg))
    register_model(f"{_cfg}_bn", Architecture(_cfg, _batch_norm))


def list_models(include_aliases: bool = False) -> list[str]:
    """The registered model names, optionally followed by the aliases (`vgg_tiny`, `vgg_small`, `vgg`, `vgg_big`).

    >>> import vggnet
    >>> vggnet.list_models(include_aliases=True)[-5:]
    ['vgg19_bn', 'vgg_tiny', 'vgg_small', 'vgg', 'vgg_big']
    """
    return list(_REGISTRY) + (list(ALIASES) if include_aliases else [])


def resolve_name(name: str) -> str:
    """The registered name behind `name` (an alias resolves to its variant); ValueError for an unknown name."""
    name = ALIASES.get(name, name)
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models(include_aliases=True))}")
    return name


def build_model(name: str, **kwargs) -> "VGG":
    """A freshly initialised model of a registered variant; `kwargs` go to `VGG` (see its docstring)."""
    from .vgg import VGG

    canonical = resolve_name(name)
    architecture = _REGISTRY[canonical]
    model = VGG(CFGS[architecture.cfg], norm_layer=architecture.norm_layer, **kwargs)
    model.model_name = canonical
    return model
