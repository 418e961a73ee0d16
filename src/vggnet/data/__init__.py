"""Image folders, robust decoding, transform presets and the built-in digits dataset. Imports nothing from
`vggnet.models`: preprocessing is described by a plain `preprocess` dict."""

from .dataset import ImageListDataset, ImagePathDataset, collate_inference, collate_skipping_failures
from .decode import UnreadableImageError, find_unreadable, load_rgb
from .digits import digits_folder, write_digits
from .folders import IMAGE_EXTENSIONS, DatasetSplits, discover_splits, evaluation_samples, list_images
from .transforms import AUGMENTS, build_transform

__all__ = [
    "AUGMENTS",
    "IMAGE_EXTENSIONS",
    "DatasetSplits",
    "ImageListDataset",
    "ImagePathDataset",
    "UnreadableImageError",
    "build_transform",
    "collate_inference",
    "collate_skipping_failures",
    "digits_folder",
    "discover_splits",
    "evaluation_samples",
    "find_unreadable",
    "list_images",
    "load_rgb",
    "write_digits",
]
