"""Decode any real-world image file to an 8-bit RGB PIL image, or fail with `UnreadableImageError`.

Handles what turns up in real folders: EXIF orientation; grayscale, palette, CMYK; transparency (RGBA, LA, palette
with a transparent colour), composited onto white; 16-bit and 32-bit integer and float images, scaled into 0-255
rather than clipped; animated images (the first frame). Corrupt, truncated, empty and non-image files, and
decompression bombs (PIL's pixel limit), raise `UnreadableImageError` naming the file and the reason.
"""

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from ..atomic import atomic_write_text

_WHITE = (255, 255, 255, 255)


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; `path` and `reason` say which and why."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def load_rgb(path: str | Path, min_size: int | None = None) -> Image.Image:
    """Decode `path` into an RGB image (see the module docstring for what is handled).

    Args:
        min_size: If given, a JPEG much larger than this is decoded at a reduced scale (1/2, 1/4 or 1/8, by
            libjpeg's DCT scaling) whose sides stay at least `min_size`: a 24-megapixel photo then takes a few MB
            of memory instead of 72.
    """
    return _decode(path, path, min_size)


def decode_image(data: bytes, name: str, min_size: int | None = None) -> Image.Image:
    """Decode an image file's bytes (an upload) into an RGB image, exactly as `load_rgb` decodes the file; `name`
    stands for the file in an `UnreadableImageError`.

    >>> decode_image(b"hello", "notes.txt")
    Traceback (most recent call last):
    vggnet.data.decode.UnreadableImageError: notes.txt: not an image PIL can read
    """
    return _decode(io.BytesIO(data), name, min_size)


def _decode(source: str | Path | BinaryIO, name: str | Path, min_size: int | None) -> Image.Image:
    try:
        with Image.open(source) as image:
            if min_size is not None and image.format == "JPEG":
                image.draft("RGB", (min_size, min_size))
            image = ImageOps.exif_transpose(image)
            image.load()
            return to_rgb(image)
    except UnreadableImageError:
        raise
    except Image.DecompressionBombError as error:
        raise UnreadableImageError(name, f"too many pixels, a possible decompression bomb ({error})") from error
    except FileNotFoundError as error:
        raise UnreadableImageError(name, "no such file") from error
    except IsADirectoryError as error:
        raise UnreadableImageError(name, "a directory, not an image") from error
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, EOFError... for bad data
        reason = str(error) or type(error).__name__
        if "cannot identify image file" in reason:
            reason = "not an image PIL can read"
        raise UnreadableImageError(name, reason) from error


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded image of any mode to 8-bit RGB."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        background = Image.new("RGBA", image.size, _WHITE)
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_scale_to_uint8(np.asarray(image), mode)).convert("RGB")
    return image.convert("RGB")


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Map high-bit-depth pixel values into 0-255: 16-bit images by 1/257, float images in [0, 1] by 255,
    32-bit integers by 1/257 when they fit 16 bits; anything else by its own minimum and maximum."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode.startswith("I;16"):
        values = values / 257.0
    elif mode == "F" and low >= 0 and high <= 1:
        values = values * 255.0
    elif mode == "I" and low >= 0 and high <= 255:
        pass
    elif mode == "I" and low >= 0 and high <= 65535:
        values = values / 257.0
    else:
        values = (values - low) / ((high - low) or 1.0) * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def find_unreadable(paths: list[Path], workers: int = 4, index: Path | None = None) -> list[UnreadableImageError]:
    """Decode every file (in threads: PIL releases the GIL while decoding) and return the failures. Large JPEGs
    are decoded at reduced scale, which still reads (and so checks) all of their data.

    Args:
        index: A file that records each checked file's size, modification time and verdict (JSON, written
            atomically). A file whose size and modification time match its record is not decoded again; any other
            (new, changed) is, and the index is rewritten for exactly `paths`. None: check every file.
    """
    records = _read_index(index)
    verdicts: dict[str, str | None] = {}
    to_check, keys = [], {}
    for path in paths:
        stat = Path(path).stat() if Path(path).exists() else None
        key = [stat.st_size, stat.st_mtime_ns] if stat else None
        record = records.get(str(path))
        if key is not None and isinstance(record, list) and len(record) == 3 and record[:2] == key:
            verdicts[str(path)] = record[2]
        else:
            to_check.append(path)
        keys[str(path)] = key

    def check(path: Path) -> UnreadableImageError | None:
        try:
            load_rgb(path, min_size=64)
        except UnreadableImageError as error:
            return error
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for path, error in zip(to_check, pool.map(check, to_check), strict=True):
            verdicts[str(path)] = None if error is None else error.reason
    if index is not None:
        files = {path: [*key, verdicts[path]] for path, key in keys.items() if key is not None}
        index.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(index, json.dumps({"version": 1, "files": files}))
    return [UnreadableImageError(path, verdicts[str(path)]) for path in paths if verdicts[str(path)] is not None]


def _read_index(index: Path | None) -> dict[str, list]:
    """The records of `index`; none when there is no index, or it cannot be read (it is then rebuilt)."""
    if index is None or not index.is_file():
        return {}
    try:
        content = json.loads(index.read_text(encoding="utf-8"))
        files = content["files"] if content.get("version") == 1 else {}
    except (ValueError, KeyError, AttributeError, TypeError):
        return {}
    return files if isinstance(files, dict) else {}
