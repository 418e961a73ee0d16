"""`Preprocess`: the preprocessing record that travels with the weights, as one small typed value.

Every checkpoint stores it (as `to_dict()` writes it), so that training, evaluation, prediction, export and serving
see identical preprocessing: resize the short side to `resize`, centre-crop `img_size` (the square the network
sees), scale to [0, 1] and normalise by `mean` and `std`.

>>> from PIL import Image
>>> from vggnet import Preprocess
>>> preprocess = Preprocess.imagenet(img_size=224)
>>> preprocess.resize, preprocess.interpolation
(256, 'bilinear')
>>> preprocess.to_dict()["std"]
[0.229, 0.224, 0.225]
>>> Preprocess.from_checkpoint(preprocess.to_dict()) == preprocess
True
>>> preprocess.transform()(Image.new("RGB", (400, 300))).shape
torch.Size([3, 224, 224])
"""

from dataclasses import dataclass, fields, replace
from numbers import Real

from .transforms import RESAMPLE, build_transform

# The ImageNet mean and std: what pretrained VGG weights expect, and a sound default for any natural image.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The entries a stored record must have; `interpolation` may be absent (bilinear, as the transforms always took it).
_REQUIRED = ("img_size", "resize", "mean", "std")


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image becomes the network's input.

    >>> from vggnet import Preprocess
    >>> Preprocess(32, 36, mean=[0.5] * 3, std=[0.25] * 3).to_dict()
    {'img_size': 32, 'resize': 36, 'mean': [0.5, 0.5, 0.5], 'std': [0.25, 0.25, 0.25], 'interpolation': 'bilinear'}
    >>> Preprocess(32, 36, std=[0.5, 0.0, 0.5])
    Traceback (most recent call last):
    ValueError: preprocess std=(0.5, 0.0, 0.5) must be positive (it divides)

    Args:
        img_size: The side of the square fed to the network.
        resize: Evaluation resizes the short side to this, then centre-crops `img_size`.
        mean: Per-channel mean subtracted after scaling to [0, 1].
        std: Per-channel standard deviation divided by.
        interpolation: `"bilinear"`, `"bicubic"` or `"nearest"` (PIL's antialiasing filters, as torchvision's).

    Raises:
        ValueError: a value is out of range or of the wrong type; the message names it.
    """

    img_size: int
    resize: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        for name in ("img_size", "resize"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"preprocess {name}={value!r} must be an integer >= 1")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not value:
                raise ValueError(f"preprocess {name}={value!r} must be a list of numbers, one per channel")
            if not all(isinstance(v, Real) and not isinstance(v, bool) for v in value):
                raise ValueError(f"preprocess {name}={value!r} must hold numbers only")
            object.__setattr__(self, name, tuple(float(v) for v in value))  # lists from a checkpoint, kept hashable
        if len(self.mean) != len(self.std):
            raise ValueError(f"preprocess mean={self.mean!r} and std={self.std!r} must have one value per channel each")
        if not all(v > 0 for v in self.std):
            raise ValueError(f"preprocess std={self.std!r} must be positive (it divides)")
        if self.interpolation not in RESAMPLE:
            raise ValueError(
                f"unknown preprocess interpolation {self.interpolation!r}; choose one of: {', '.join(RESAMPLE)}"
            )

    @classmethod
    def imagenet(cls, img_size: int = 224, crop_pct: float = 0.875) -> "Preprocess":
        """ImageNet's evaluation preprocessing at `img_size`: the short side resized to `img_size / crop_pct`,
        the ImageNet mean and std, bilinear. The defaults are torchvision's preset for its VGG weights.

        >>> Preprocess.imagenet(32, crop_pct=1.0).resize
        32
        """
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct={crop_pct!r} must be in (0, 1]; 0.875 is usual, 1 for no crop")
        return cls(img_size, round(img_size / crop_pct))

    @classmethod
    def from_checkpoint(cls, record: dict) -> "Preprocess":
        """The value of a `preprocess` record as checkpoints store it (`to_dict`'s keys; `interpolation` may be
        absent, for bilinear).

        Raises:
            ValueError: the record is not a dict, lacks a key, has a key of no meaning here, or holds a bad value.
        """
        if not isinstance(record, dict):
            raise ValueError(f"the preprocess record must be a dict, got {type(record).__name__}: {record!r}")
        missing = [key for key in _REQUIRED if key not in record]
        if missing:
            raise ValueError(f"the preprocess record {record!r} lacks {', '.join(missing)}")
        unknown = sorted(set(record) - {field.name for field in fields(cls)})
        if unknown:
            raise ValueError(f"the preprocess record {record!r} has entries of no meaning here: {', '.join(unknown)}")
        return cls(**record)

    def to_dict(self) -> dict:
        """The record as checkpoints and weights files store it: plain values, `mean` and `std` as lists."""
        return {
            "img_size": self.img_size,
            "resize": self.resize,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }

    @property
    def decode_size(self) -> int:
        """The smallest decoded image the transforms need without loss: twice the resize side leaves headroom for
        random crops. Datasets pass it to `load_rgb`, which then decodes huge JPEGs at reduced scale."""
        return 2 * max(self.resize, self.img_size)

    def at_img_size(self, img_size: int) -> "Preprocess":
        """The same preprocessing for another crop side, `resize` scaled with it (crop fraction kept).

        >>> Preprocess.imagenet(224).at_img_size(112).resize
        128
        """
        return replace(self, img_size=img_size, resize=round(img_size * self.resize / self.img_size))

    def transform(self, train: bool = False, augment: str = "basic"):
        """The transform from a PIL RGB image to the normalised float tensor (3, img_size, img_size).

        Args:
            train: Training transform (random augmentation) rather than the deterministic evaluation one.
            augment: For training: `"none"` (the evaluation transform), `"basic"` (random resized crop and
                horizontal flip) or `"trivial"` (basic plus TrivialAugmentWide).
        """
        return build_transform(self, train, augment)
