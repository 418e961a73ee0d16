"""Train and eval transform presets (torchvision.transforms.v2), parametrised by a `preprocess` record.

A `preprocess` record is a plain dict, stored in every checkpoint and weights entry, so that training,
evaluation, prediction and export see identical preprocessing:

    {"img_size": 224, "resize": 256, "mean": [...], "std": [...], "interpolation": "bilinear"}

`img_size` is the square fed to the network; evaluation resizes the short side to `resize` and centre-crops.
"""

import torch
from torchvision.transforms import InterpolationMode, v2

from ..choices import AUGMENTS

# Before the evaluation resize, images are cut to at most this aspect ratio (see LimitAspectRatio).
MAX_ASPECT = 4


class LimitAspectRatio:
    """Centre-cut a PIL image whose long side exceeds `max_aspect` times its short side.

    Resizing the short side of a 4000x3 strip to 256 would make it 341,333 pixels long; the centre crop that
    follows uses only the middle anyway, so cutting to 4:1 first gives the same pixels in bounded memory."""

    def __init__(self, max_aspect: float) -> None:
        self.max_aspect = max_aspect

    def __call__(self, image):
        width, height = image.size
        if width > self.max_aspect * height:
            keep = round(self.max_aspect * height)
            left = (width - keep) // 2
            return image.crop((left, 0, left + keep, height))
        if height > self.max_aspect * width:
            keep = round(self.max_aspect * width)
            top = (height - keep) // 2
            return image.crop((0, top, width, top + keep))
        return image


INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


def build_transform(preprocess: dict, train: bool = False, augment: str = "basic") -> v2.Compose:
    """The transform from a PIL RGB image to a normalised float tensor (3, img_size, img_size).

    Args:
        preprocess: The record described in the module docstring.
        train: Training transform (random augmentation) rather than the deterministic evaluation one.
        augment: For training: `"none"` (the evaluation transform), `"basic"` (random resized crop and
            horizontal flip) or `"trivial"` (basic plus TrivialAugmentWide).
    """
    if augment not in AUGMENTS:
        raise ValueError(f"unknown augment {augment!r}; choose one of: {', '.join(AUGMENTS)}")
    size, resize = preprocess["img_size"], preprocess["resize"]
    interpolation = INTERPOLATIONS[preprocess.get("interpolation", "bilinear")]
    if train and augment != "none":
        geometry = [
            v2.RandomResizedCrop(size, scale=(0.35, 1.0), interpolation=interpolation, antialias=True),
            v2.RandomHorizontalFlip(),
        ]
        if augment == "trivial":
            geometry.append(v2.TrivialAugmentWide(interpolation=interpolation))
    else:
        geometry = [
            LimitAspectRatio(MAX_ASPECT),
            v2.Resize(resize, interpolation=interpolation, antialias=True),
            v2.CenterCrop(size),
        ]
    # Geometry on the PIL image, as torchvision's ImageClassification preset does: the same pixels the official
    # weights were evaluated on.
    transform = v2.Compose(
        [
            *geometry,
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(preprocess["mean"]), std=list(preprocess["std"])),
        ]
    )
    # The smallest decoded image this transform needs without loss: twice the resize side leaves headroom for
    # random crops. Datasets pass it to `load_rgb`, which then decodes huge JPEGs at reduced scale.
    transform.decode_size = 2 * max(resize, size)
    return transform
