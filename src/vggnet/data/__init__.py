"""Image folders, robust decoding, transform presets and the built-in digits dataset. Imports nothing from
`vggnet.models`: preprocessing is described by a plain `preprocess` dict."""

from .dataset import ImageListDataset, collate_skipping_failures
from .decode import UnreadableImageError, find_unreadable, load_rgb
from .digits import digits_folder, write_digits
from .folders import IMAGE_EXTENSIONS, DatasetSplits, discover_splits
from .transforms import AUGMENTS, build_transform

__all__ = [
    "AUGMENTS",
    "IMAGE_EXTENSIONS",
    "DatasetSplits",
    "ImageListDataset",
    "UnreadableImageError",
    "build_transform",
    "collate_skipping_failures",
    "digits_folder",
    "discover_splits",
    "find_unreadable",
    "load_rgb",
    "write_digits",
]
