"""torchvision's builders, one per registered variant and generated from the registry: `vgg16(weights=...)` is
`create_model("vgg16", pretrained=...)`, for code written against `torchvision.models.vgg16`.

>>> from vggnet.models import vgg11_bn
>>> model = vgg11_bn(num_classes=3, head="compact", width_mult=0.125)
>>> model.model_name, model.num_classes
('vgg11_bn', 3)
>>> model = vgg11_bn(weights="imagenet")  # doctest: +SKIP
"""

from collections.abc import Callable

from .factory import create_model
from .vgg import VGG


def _builder(name: str) -> Callable[..., VGG]:
    def build(*, weights: str | None = None, progress: bool = True, **kwargs) -> VGG:
        return create_model(name, pretrained=weights, progress=progress, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f'{name}, with the official weights of a tag (`weights="imagenet"`) or none; `kwargs` go to `VGG` '
        f"(see `create_model`)."
    )
    return build


vgg11 = _builder("vgg11")
vgg11_bn = _builder("vgg11_bn")
vgg13 = _builder("vgg13")
vgg13_bn = _builder("vgg13_bn")
vgg16 = _builder("vgg16")
vgg16_bn = _builder("vgg16_bn")
vgg19 = _builder("vgg19")
vgg19_bn = _builder("vgg19_bn")
