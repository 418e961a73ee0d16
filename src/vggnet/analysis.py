"""Per-layer analysis of a VGG: output shape, parameters, MACs, receptive field and effective stride.

    $ vggnet summary --model vgg16 --img-size 224 --format table

    >>> import vggnet
    >>> summary = vggnet.summarize("vgg16")
    >>> summary.total_params, summary.total_macs
    (138357544, 15470264320)

MACs count the multiply-accumulates of convolutions and linear layers per image, as torchvision's published
figures (and fvcore) do; pooling, ReLU and BatchNorm count as 0. The receptive field is the side of the input
square that one output unit depends on (the theoretical one, which may exceed the image: padding adds
border), and the effective stride is the input-pixel distance between neighbouring units. Two stacked 3x3
convolutions see 5x5 and three see 7x7, with fewer weights than one 5x5 or 7x7 convolution: the VGG paper's point.
"""

import json
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .models.registry import ALIASES, build_model, list_models
from .models.vgg import MIN_INPUT_SIZE, VGG
from .models.weights import PRETRAINED
from .tables import human_count, render_table


@dataclass(frozen=True)
class LayerSummary:
    """One layer: canonical name, module type, output shape (C, H, W) or (features,), parameters, MACs per image,
    receptive field (pixels) and effective stride (pixels; None once the spatial layout is flattened).

    >>> import vggnet
    >>> vggnet.summarize("vgg16").layers[0]  # 64 filters of 3x3x3 plus biases, each read at 224x224 positions
    LayerSummary(name='conv1_1', type='Conv2d', output_shape=(64, 224, 224), params=1792, macs=86704128,
                 receptive_field=3, stride=1)
    """

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    receptive_field: int
    stride: int | None


@dataclass(frozen=True)
class ModelSummary:
    """The analysis of one model at one input size; see `summarize`.

    >>> import vggnet
    >>> summary = vggnet.summarize("vgg16", num_classes=10)  # fc8 of 4,097,000 weights becomes one of 40,970
    >>> summary.model, summary.head, summary.total_params
    ('vgg16', 'classic', 134301514)
    >>> report = summary.to_dict()
    >>> report["gmacs"], len(report["layers"])
    (15.466, 40)
    >>> print(summary.render())  # also "markdown" or "json"
    vgg16 (classic head, 10 classes), input 3x224x224
    <BLANKLINE>
    layer    type  output shape  params  MACs  receptive field  stride
    ...
    fc8      Linear  10  40,970  40.96K  404  -
    <BLANKLINE>
    total params: 134,301,514 (512.3 MiB as fp32), trainable: 134,301,514
    total MACs: 15,466,209,280 (15.47 GMACs) per image
    """

    model: str
    input_size: int
    in_chans: int
    num_classes: int
    head: str
    trainable_params: int
    layers: list[LayerSummary]

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def to_dict(self) -> dict:
        """Plain data: `model`, `input_size`, `total_params`, `total_macs`, `gmacs`, ..., and `layers`."""
        return {
            "model": self.model,
            "input_size": self.input_size,
            "in_chans": self.in_chans,
            "num_classes": self.num_classes,
            "head": self.head,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "total_macs": self.total_macs,
            "gmacs": round(self.total_macs / 1e9, 3),
            "layers": [asdict(layer) for layer in self.layers],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render(self, style: str = "table") -> str:
        """The report as `"table"` (aligned text), `"markdown"` or `"json"`."""
        if style == "json":
            return self.to_json()
        headers = ["layer", "type", "output shape", "params", "MACs", "receptive field", "stride"]
        rows = [
            [
                layer.name,
                layer.type,
                "x".join(map(str, layer.output_shape)),
                f"{layer.params:,}",
                human_count(layer.macs),
                layer.receptive_field,
                "-" if layer.stride is None else layer.stride,
            ]
            for layer in self.layers
        ]
        table = render_table(headers, rows, "markdown" if style == "markdown" else "text")
        size = f"{self.in_chans}x{self.input_size}x{self.input_size}"
        title = f"{self.model} ({self.head} head, {self.num_classes} classes), input {size}"
        totals = (
            f"total params: {self.total_params:,} ({self.total_params * 4 / 2**20:.1f} MiB as fp32), "
            f"trainable: {self.trainable_params:,}\n"
            f"total MACs: {self.total_macs:,} ({self.total_macs / 1e9:.2f} GMACs) per image"
        )
        if style == "markdown":
            return f"**{title}**\n\n{table}\n\n" + "  \n".join(totals.splitlines())
        return f"{title}\n\n{table}\n\n{totals}"


def summarize(model: str | VGG, input_size: int = 224, **model_kwargs) -> ModelSummary:
    """Analyse a model layer by layer at a square input size.

    >>> import vggnet
    >>> summary = vggnet.summarize("vgg16")  # torchvision publishes the same counts
    >>> summary.total_params, round(summary.total_macs / 1e9, 2)
    (138357544, 15.47)
    >>> [(layer.name, layer.receptive_field, layer.stride) for layer in summary.layers if layer.type == "MaxPool2d"]
    [('pool1', 6, 2), ('pool2', 16, 4), ('pool3', 44, 8), ('pool4', 100, 16), ('pool5', 212, 32)]
    >>> model = vggnet.create_model("vgg11", num_classes=10, head="compact", width_mult=0.125)
    >>> vggnet.summarize(model, input_size=32).total_params == sum(p.numel() for p in model.parameters())
    True

    Args:
        model: A registry name (the model is then built on the meta device: no memory, no compute) or a VGG.
        input_size: Side of the square input, at least 32.
        **model_kwargs: With a name, arguments for `create_model` (`num_classes`, `in_chans`, `head`, ...).
    """
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < MIN_INPUT_SIZE:
        raise ValueError(
            f"input size {input_size!r} is too small for VGG's five 2x2 max-pools; use at least {MIN_INPUT_SIZE}"
        )
    if isinstance(model, str):
        with torch.device("meta"):
            model = build_model(model, **model_kwargs)
    elif model_kwargs:
        raise ValueError(f"model arguments {sorted(model_kwargs)} apply only when the model is given by name")
    parameter = next(model.parameters())
    x = torch.zeros(1, model.in_chans, input_size, input_size, device=parameter.device, dtype=parameter.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            layers = _walk(model, x)
    finally:
        model.train(was_training)
    return ModelSummary(
        model=model.model_name or type(model).__name__,
        input_size=input_size,
        in_chans=model.in_chans,
        num_classes=model.num_classes,
        head=model.head,
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        layers=layers,
    )


def _walk(model: VGG, x: torch.Tensor) -> list[LayerSummary]:
    """Run `x` through the named layers, tracking receptive field `rf` and stride `jump` (both in input pixels).

    `whole` is the receptive field of a unit that sees the entire current map; once flattened, every unit does.
    """
    rf, jump, whole = 1, 1, x.shape[-1]
    layers = []
    for name, module in model.named_layers():
        out = module(x)
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            dilation = _first(getattr(module, "dilation", 1))
            rf += (_first(module.kernel_size) - 1) * dilation * jump
            jump *= _first(module.stride)
            whole = rf + (out.shape[-1] - 1) * jump
        elif isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            size_in, size_out = x.shape[-1], out.shape[-1]
            widest_bin = max(
                math.ceil((i + 1) * size_in / size_out) - math.floor(i * size_in / size_out) for i in range(size_out)
            )
            rf += (widest_bin - 1) * jump
            jump = jump * size_in // size_out if size_in % size_out == 0 else None
        elif isinstance(module, nn.Flatten):
            rf, jump = whole, None
        layers.append(
            LayerSummary(
                name=name,
                type=type(module).__name__,
                output_shape=tuple(out.shape[1:]),
                params=sum(p.numel() for p in module.parameters(recurse=False)),
                macs=_macs(module, out),
                receptive_field=rf,
                stride=jump,
            )
        )
        x = out
    return layers


def _first(value: int | tuple[int, ...]) -> int:
    return value[0] if isinstance(value, tuple) else value


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    """Multiply-accumulates per image: each output value of a convolution or linear layer costs one per weight
    it reads."""
    per_image = out[0].numel()
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_image * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return per_image * module.in_features
    return 0


def describe_models(input_size: int = 224) -> list[dict]:
    """One row per registered variant: parameters and GMACs at `input_size` (classic head, 1000 classes),
    aliases, and the official weights' published ImageNet-1K accuracy (%) and URL.

    >>> import vggnet
    >>> rows = vggnet.describe_models()
    >>> [row["model"] for row in rows]
    ['vgg11', 'vgg11_bn', 'vgg13', 'vgg13_bn', 'vgg16', 'vgg16_bn', 'vgg19', 'vgg19_bn']
    >>> vgg16 = rows[4]
    >>> vgg16["aliases"], vgg16["params"], vgg16["gmacs"], vgg16["acc1"], vgg16["acc5"]
    (['vgg'], 138357544, 15.47, 71.592, 90.382)
    """
    rows = []
    for name in list_models():
        summary = summarize(name, input_size)
        weights = PRETRAINED.get((name, "imagenet"))
        rows.append(
            {
                "model": name,
                "aliases": [alias for alias, target in ALIASES.items() if target == name],
                "params": summary.total_params,
                "gmacs": round(summary.total_macs / 1e9, 3),
                "acc1": weights.acc1 if weights else None,
                "acc5": weights.acc5 if weights else None,
                "weights": weights.url if weights else None,
            }
        )
    return rows


def render_models(input_size: int = 224, style: str = "table") -> str:
    """`describe_models(input_size)` as `vggnet models` prints it: `"table"` (aligned text), `"markdown"` (both with
    a note on where the accuracy comes from) or `"json"`."""
    rows = describe_models(input_size)
    if style == "json":
        return json.dumps(rows, indent=2)
    headers = ["model", "aliases", "params", f"GMACs@{input_size}", "acc@1", "acc@5"]
    cells = [
        [
            row["model"],
            ", ".join(row["aliases"]) or "-",
            f"{row['params']:,}",
            f"{row['gmacs']:.3f}",
            "-" if row["acc1"] is None else f"{row['acc1']:.3f}",
            "-" if row["acc5"] is None else f"{row['acc5']:.3f}",
        ]
        for row in rows
    ]
    table = render_table(headers, cells, "markdown" if style == "markdown" else "text")
    source = "accuracy: ImageNet-1K validation, official weights (pretrained='imagenet'), as published by torchvision"
    return f"{table}\n\n{source}"
