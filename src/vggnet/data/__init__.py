"""Image folders and labelled tables, robust decoding, the preprocessing record and its transforms, and the
built-in digits dataset. Imports nothing from `vggnet.models`: the weights describe their preprocessing with this
package's `Preprocess`."""

from .dataset import ImageListDataset, ImagePathDataset, collate_inference, collate_skipping_failures
from .decode import UnreadableImageError, decode_image, find_unreadable, load_rgb
from .digits import default_cache_dir, digits_folder, write_digits
from .folders import IMAGE_EXTENSIONS, DatasetSplits, discover_splits, evaluation_samples, list_images
from .preprocess import Preprocess
from .tables import TableColumns, evaluation_samples_of, read_columns, splits_of
from .transforms import AUGMENTS

__all__ = [
    "AUGMENTS",
    "IMAGE_EXTENSIONS",
    "DatasetSplits",
    "ImageListDataset",
    "ImagePathDataset",
    "Preprocess",
    "TableColumns",
    "UnreadableImageError",
    "collate_inference",
    "collate_skipping_failures",
    "decode_image",
    "default_cache_dir",
    "digits_folder",
    "discover_splits",
    "evaluation_samples",
    "evaluation_samples_of",
    "find_unreadable",
    "list_images",
    "load_rgb",
    "read_columns",
    "splits_of",
    "write_digits",
]
