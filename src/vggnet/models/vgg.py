"""The VGG family (Simonyan & Zisserman, 2014), built from config lists.

Each variant is a line of data in `cfgs.CFGS`: a number is a 3x3 convolution (padding 1) with that many output
channels, followed by ReLU; `"M"` is a 2x2 max-pool with stride 2. One `make_features` loop turns a list into
layers. Module structure and state-dict keys are torchvision's (`features.N`, `avgpool`, `classifier.0/3/6`), so
torchvision's official checkpoints load with `strict=True`.

>>> from vggnet.models import CFGS, VGG
>>> model = VGG(CFGS["vgg16"], num_classes=10)
>>> model.layer_names[:4], model.num_features
(['conv1_1', 'relu1_1', 'conv1_2', 'relu1_2'], 512)
"""

import difflib
from collections.abc import Callable

import torch
from torch import nn

from .cfgs import HEADS, MIN_INPUT_SIZE
from .cpu_training import training_conv

INITS = ("kaiming", "xavier")

# Canonical names of the head layers in forward order, after `avgpool` and `flatten`.
_HEAD_LAYER_NAMES = {
    "classic": ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"],
    "compact": ["drop", "fc"],
}


def make_features(
    cfg: list[int | str],
    in_chans: int = 3,
    norm_layer: Callable[[int], nn.Module] | None = None,
    width_mult: float = 1.0,
) -> nn.Sequential:
    """Build the convolutional part of a VGG from a config list.

    Args:
        cfg: Numbers are 3x3 convolutions with that many output channels, `"M"` is a 2x2 max-pool.
        in_chans: Channels of the input image.
        norm_layer: Called with a channel count to make a layer placed between each convolution and its ReLU
            (`nn.BatchNorm2d` gives the `_bn` variants); None for none.
        width_mult: Multiplies every channel count (1.0 is the published network).
    """
    layers: list[nn.Module] = []
    channels = in_chans
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out_channels = max(1, round(int(v) * width_mult))
        layers.append(nn.Conv2d(channels, out_channels, kernel_size=3, padding=1))
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        layers.append(nn.ReLU(inplace=True))
        channels = out_channels
    return nn.Sequential(*layers)


def _feature_layer_names(features: nn.Sequential) -> list[str]:
    """Canonical names (`conv1_1`, `bn1_1`, `relu1_1`, ..., `pool5`) of the layers in `features`, in order."""
    names = []
    block, index = 1, 1
    for module in features:
        if isinstance(module, nn.MaxPool2d):
            names.append(f"pool{block}")
            block, index = block + 1, 1
        elif isinstance(module, nn.Conv2d):
            names.append(f"conv{block}_{index}")
        elif isinstance(module, nn.ReLU):
            names.append(f"relu{block}_{index}")
            index += 1
        else:
            names.append(f"bn{block}_{index}")
    return names


def init_weights(module: nn.Module, scheme: str) -> None:
    """Initialise one layer in place.

    `"kaiming"` is torchvision's scheme (He-normal convolutions, N(0, 0.01) linear layers); `"xavier"` is the
    seed note's (Xavier-uniform convolutions and linear layers). Biases start at 0, norm layers at identity with
    fresh running statistics.
    """
    if isinstance(module, nn.Conv2d):
        if scheme == "kaiming":
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        else:
            nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        if scheme == "kaiming":
            nn.init.normal_(module.weight, 0, 0.01)
        else:
            nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        module.reset_parameters()  # weight 1, bias 0, fresh running statistics


class VGG(nn.Module):
    """A VGG network: `features` (convolutions and pools), `avgpool`, `flatten` and a `classifier` head.

    >>> import torch, vggnet
    >>> model = vggnet.create_model("vgg11", num_classes=10, head="compact", width_mult=0.125)  # a registry VGG
    >>> x = torch.randn(2, 3, 32, 32)
    >>> model(x).shape, model.forward_features(x).shape
    (torch.Size([2, 10]), torch.Size([2, 64, 1, 1]))
    >>> model.forward_head(model.forward_features(x), pre_logits=True).shape  # the input of the last layer
    torch.Size([2, 64])
    >>> model.reset_classifier(5)
    >>> model(x).shape
    torch.Size([2, 5])

    Args:
        cfg: Config list, one of `CFGS` or your own.
        num_classes: Outputs of the last layer; 0 makes the last layer an identity (a feature extractor).
        in_chans: Channels of the input image.
        norm_layer: Layer factory placed after each convolution (`nn.BatchNorm2d` for the `_bn` variants).
        dropout: Dropout probability in the head.
        head: `"classic"` is the paper's 4096-4096 MLP on a 7x7 map (torchvision's layout); `"compact"` is global
            average pooling and one linear layer, for small inputs and small datasets.
        init: `"kaiming"` (torchvision's initialisation) or `"xavier"` (the seed note's).
        width_mult: Multiplies every convolution's channel count.
    """

    def __init__(
        self,
        cfg: list[int | str],
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        norm_layer: Callable[[int], nn.Module] | None = None,
        dropout: float = 0.5,
        head: str = "classic",
        init: str = "kaiming",
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        _check_choice("head", head, HEADS)
        _check_choice("init", init, INITS)
        _check_int("num_classes", num_classes, minimum=0)
        _check_int("in_chans", in_chans, minimum=1)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r} is not a probability; use a value in [0, 1), e.g. 0.5")
        if not width_mult > 0:
            raise ValueError(f"width_mult={width_mult!r} must be positive, e.g. 1.0 (published) or 0.25 (small)")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.dropout = dropout
        self.head = head
        self.init = init
        self.width_mult = width_mult
        # Set by `create_model` (the registry name) and by `load_weights` (source, classes, preprocessing).
        self.model_name: str | None = None
        self.pretrained_cfg: dict | None = None

        self.features = make_features(cfg, in_chans, norm_layer, width_mult)
        # Channels of the last feature map (timm's `num_features`).
        self.num_features = next(m.out_channels for m in reversed(self.features) if isinstance(m, nn.Conv2d))
        if head == "classic":
            # torchvision's layout: a 7x7 map whatever the input size, then fc6 and fc7 with 4096 units each.
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.head_hidden_size = 4096
            hidden = [
                nn.Linear(self.num_features * 7 * 7, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p=dropout),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p=dropout),
            ]
        else:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.head_hidden_size = self.num_features
            hidden = [nn.Dropout(p=dropout)]
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(*hidden, self._make_fc(num_classes))
        self._layer_names = [
            *_feature_layer_names(self.features),
            "avgpool",
            "flatten",
            *_HEAD_LAYER_NAMES[head],
        ]
        if not next(self.parameters()).is_meta:  # an empty model (`empty_model`) is left for weights to fill
            for module in self.modules():
                init_weights(module, init)

    def _make_fc(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    @property
    def model_kwargs(self) -> dict:
        """Constructor arguments that rebuild this model with `create_model(model_name, **model_kwargs)`."""
        return {
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "dropout": self.dropout,
            "head": self.head,
            "init": self.init,
            "width_mult": self.width_mult,
        }

    @property
    def layer_names(self) -> list[str]:
        """Canonical layer names in forward order: `conv1_1`, `relu1_1`, ..., `pool5`, `avgpool`, `flatten`,
        then `fc6`, `relu6`, `drop6`, `fc7`, `relu7`, `drop7`, `fc8` (classic head) or `drop`, `fc` (compact)."""
        return list(self._layer_names)

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        """(canonical name, module) pairs in forward order; applying them in turn is the forward pass."""
        modules = [*self.features, self.avgpool, self.flatten, *self.classifier]
        return list(zip(self._layer_names, modules, strict=True))

    def get_layer(self, name: str) -> nn.Module:
        """The module with canonical name `name` (e.g. `"conv5_3"`): also the one check of a layer name that
        every verb taking `--layer` makes.

        Raises:
            ValueError: this model has no such layer; the message suggests the closest name and lists them all.
        """
        layers = dict(self.named_layers())
        if name not in layers:
            raise ValueError(self._unknown_layer_message(name))
        return layers[name]

    def _unknown_layer_message(self, name: str) -> str:
        names = self.layer_names
        other_heads = [head for head, names_in in _HEAD_LAYER_NAMES.items() if head != self.head and name in names_in]
        close = difflib.get_close_matches(name, names, n=1)
        if other_heads:
            # The usual slip: a classic-head name (relu7, fc7) on a compact-head model, or the reverse.
            hint = f"{name} is a layer of the {other_heads[0]} head, and this model has the {self.head} head; "
        elif close:
            hint = f"did you mean {close[0]!r}? "
        else:
            hint = ""
        model = f"{self.model_name or 'VGG'} ({self.head} head)"
        return f"unknown layer {name!r} in this {model}; {hint}its layers are: {', '.join(names)}"

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless `x` is an (N, in_chans, H, W) batch with H and W at least `MIN_INPUT_SIZE`."""
        if x.ndim != 4:
            raise ValueError(
                f"expected a batch of shape (N, {self.in_chans}, H, W), got {tuple(x.shape)}; "
                f"add the batch dimension with x.unsqueeze(0)"
            )
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected {self.in_chans} input channels, got {x.shape[1]} (input shape {tuple(x.shape)}); "
                f"convert the images to {self.in_chans} channels or build the model with in_chans={x.shape[1]}"
            )
        if min(x.shape[-2:]) < MIN_INPUT_SIZE:
            raise ValueError(
                f"input of {x.shape[-2]}x{x.shape[-1]} pixels is too small for VGG's five 2x2 max-pools; "
                f"resize it to at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (after `pool5`), shape (N, num_features, H/32, W/32).

        Training on the CPU, each convolution runs by `cpu_training.training_conv`: as a matrix product on maps of
        2x2 or smaller, and by vggnet's own kernels (Winograd's, a matrix-product weight gradient) where they
        measured faster than oneDNN's.
        """
        self.check_input(x)
        if not (self.training and x.device.type == "cpu"):
            return self.features(x)
        for layer in self.features:
            x = training_conv(layer, x) if isinstance(layer, nn.Conv2d) else layer(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Map a feature map to logits, or with `pre_logits=True` to the vector fed to the last layer
        (`drop7`'s output, 4096 values, for the classic head; the pooled `num_features` for the compact one)."""
        x = self.flatten(self.avgpool(x))
        for module in self.classifier[:-1]:
            x = module(x)
        return x if pre_logits else self.classifier[-1](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last layer with a freshly initialised one for `num_classes` outputs (0: identity)."""
        _check_int("num_classes", num_classes, minimum=0)
        reference = next(self.features.parameters())
        fc = self._make_fc(num_classes).to(device=reference.device, dtype=reference.dtype)
        init_weights(fc, self.init)
        self.classifier[-1] = fc
        self.num_classes = num_classes


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
