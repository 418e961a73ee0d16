"""Train and eval transform presets (torchvision.transforms.v2), parametrised by a `preprocess` record.

A `preprocess` record is a plain dict, stored in every checkpoint and weights entry, so that training,
evaluation, prediction and export see identical preprocessing:

    {"img_size": 224, "resize": 256, "mean": [...], "std": [...], "interpolation": "bilinear"}

`img_size` is the square fed to the network; evaluation resizes the short side to `resize` and centre-crops.
"""

import torch
from torchvision.transforms import InterpolationMode, v2

AUGMENTS = ("none", "basic", "trivial")
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
        geometry = [v2.Resize(resize, interpolation=interpolation, antialias=True), v2.CenterCrop(size)]
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
