"""Train and eval transform presets, parametrised by a `Preprocess` record (see `preprocess.py`).

`img_size` is the square fed to the network; evaluation resizes the short side to `resize` and centre-crops.

Training augments with torchvision.transforms.v2. Evaluation (what eval, predict, embed, explain and training's
validation run) is `EvalTransform`: the same PIL operations that torchvision's v2 Resize and CenterCrop run on a PIL
image, written out so that inference never imports torchvision, whose import pulls in torch._dynamo and costs
seconds on every `vggnet predict`. Tests hold it to torchvision's own preset, pixel for pixel.
"""

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from ..choices import AUGMENTS

if TYPE_CHECKING:  # preprocess.py imports this module: the record's type is only named here
    from .preprocess import Preprocess

# Before the evaluation resize, images are cut to at most this aspect ratio (see `limit_aspect_ratio`).
MAX_ASPECT = 4

# PIL's filters for the record's interpolation names: the ones torchvision's v2 Resize uses on PIL images.
RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


def limit_aspect_ratio(image: Image.Image, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """Centre-cut a PIL image whose long side exceeds `max_aspect` times its short side.

    Resizing the short side of a 4000x3 strip to 256 would make it 341,333 pixels long; the centre crop that
    follows uses only the middle anyway, so cutting to 4:1 first gives the same pixels in bounded memory."""
    width, height = image.size
    if width > max_aspect * height:
        keep = round(max_aspect * height)
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    if height > max_aspect * width:
        keep = round(max_aspect * width)
        top = (height - keep) // 2
        return image.crop((0, top, width, top + keep))
    return image


class EvalTransform:
    """A PIL RGB image -> the network's normalised float tensor (3, img_size, img_size), deterministically:
    cut to at most 4:1, short side resized to `resize` (PIL's antialiasing filter), centre crop of `img_size`
    (zero-padded if the image is smaller), scaled to [0, 1], normalised by `mean` and `std`.

    Each step is what torchvision.transforms.v2 does to a PIL image (Resize, CenterCrop, ToImage, ToDtype with
    scale, Normalize), in the same arithmetic, so the values are identical to torchvision's preset."""

    def __init__(self, preprocess: "Preprocess") -> None:
        self.size, self.resize = preprocess.img_size, preprocess.resize
        self.resample = RESAMPLE[preprocess.interpolation]
        self.mean = torch.tensor(preprocess.mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(preprocess.std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = self._centre_crop(self._resize(limit_aspect_ratio(image)))
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)
        return pixels.to(torch.float32).mul_(1.0 / 255).sub_(self.mean).div_(self.std)

    def _resize(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize, int(self.resize * long / short)
        size = (new_short, new_long) if width <= height else (new_long, new_short)
        return image if size == image.size else image.resize(size, resample=self.resample)

    def _centre_crop(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        if width < self.size or height < self.size:  # pad with zeros to the crop, centred as torchvision pads
            padded = Image.new(image.mode, (max(width, self.size), max(height, self.size)), 0)
            padded.paste(
                image,
                (
                    (self.size - width) // 2 if width < self.size else 0,
                    (self.size - height) // 2 if height < self.size else 0,
                ),
            )
            image, (width, height) = padded, padded.size
        top, left = int(round((height - self.size) / 2.0)), int(round((width - self.size) / 2.0))
        return image.crop((left, top, left + self.size, top + self.size))


def build_transform(preprocess: "Preprocess", train: bool = False, augment: str = "basic"):
    """The transform from a PIL RGB image to a normalised float tensor (3, img_size, img_size); what
    `Preprocess.transform` returns (see it for the arguments)."""
    if augment not in AUGMENTS:
        raise ValueError(f"unknown augment {augment!r}; choose one of: {', '.join(AUGMENTS)}")
    if not train or augment == "none":
        return EvalTransform(preprocess)
    from torchvision.transforms import v2

    # Geometry on the PIL image, as torchvision's ImageClassification preset does.
    return v2.Compose(
        [
            *train_geometry(preprocess, augment),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(preprocess.mean), std=list(preprocess.std)),
        ]
    )


@contextlib.contextmanager
def seeded_draws(seed: int) -> Iterator[None]:
    """Within the block, torch's CPU generator, which the training augmentation draws from (on any device), is
    seeded by `seed`; after it, the generator has its state back. (`torch.manual_seed` would also queue the seed for
    CUDA and the other lazily initialised devices, formatting a stack trace for each: 90 us a call, more than
    decoding a small PNG.)"""
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)


def train_geometry(preprocess: "Preprocess", augment: str) -> list:
    """The training augmentation's geometry as torchvision v2 transforms, which take a PIL image or (on any
    device) a uint8 tensor: a random resized crop and a flip (with TrivialAugmentWide for `"trivial"`); for `"none"`,
    the evaluation's resize of the short side and centre crop."""
    from torchvision.transforms import InterpolationMode, v2

    size = preprocess.img_size
    interpolation = InterpolationMode(preprocess.interpolation)
    if augment == "none":
        return [v2.Resize(preprocess.resize, interpolation=interpolation, antialias=True), v2.CenterCrop(size)]
    geometry = [
        v2.RandomResizedCrop(size, scale=(0.35, 1.0), interpolation=interpolation, antialias=True),
        v2.RandomHorizontalFlip(),
    ]
    if augment == "trivial":
        geometry.append(v2.TrivialAugmentWide(interpolation=interpolation))
    return geometry
