"""Decode any real-world image file to an 8-bit RGB PIL image, or fail with `UnreadableImageError`.

Handles what turns up in real folders: EXIF orientation; grayscale, palette, CMYK; transparency (RGBA, LA, palette
with a transparent colour), composited onto white; 16-bit and 32-bit integer and float images, scaled into 0-255
rather than clipped; animated images (the first frame). Corrupt, truncated, empty and non-image files, and
decompression bombs (PIL's pixel limit), raise `UnreadableImageError` naming the file and the reason.

`find_unreadable` checks a list of files before training, recording the verdicts in an index so that unchanged
files are not decoded again; `ImageCheck`, `read_index`, `write_index` and `unreadable_errors` are its steps, for a
caller that splits the work among processes (training under torchrun).
"""

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

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


def decode_image(data: bytes, name: str, min_size: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """Decode an image file's bytes (an upload) into an RGB image, exactly as `load_rgb` decodes the file; `name`
    stands for the file in an `UnreadableImageError`. `max_pixels`: refuse an image that would decode (after a
    JPEG's reduced scale) to more pixels, before decoding it (a server's bound on the memory a request takes).

    >>> decode_image(b"hello", "notes.txt")
    Traceback (most recent call last):
    vggnet.data.decode.UnreadableImageError: notes.txt: not an image PIL can read
    """
    return _decode(io.BytesIO(data), name, min_size, max_pixels)


def _decode(
    source: str | Path | BinaryIO, name: str | Path, min_size: int | None, max_pixels: int | None = None
) -> Image.Image:
    try:
        with Image.open(source) as image:
            if min_size is not None and image.format == "JPEG":
                image.draft("RGB", (min_size, min_size))
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise UnreadableImageError(
                    name,
                    f"{image.width}x{image.height} pixels to decode, more than the {max_pixels / 1e6:.0f} million "
                    f"this takes; send a smaller image",
                )
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
    records = ImageCheck(paths, read_index(index)).run(workers)
    if index is not None:
        write_index(index, paths, records)
    return unreadable_errors(paths, records)


class ImageCheck:
    """The check of `paths` against an index's records (`read_index`), which a caller may split among processes.

    `records` holds each file's `[size, mtime_ns, verdict]` (the verdict None for a readable image, else the reason
    it is not; size and time None for a file that cannot be found): the index's record where the file's size and
    modification time still match it, else a record whose verdict `run` decodes. `pending` counts those.
    """

    def __init__(self, paths: list[Path], known: dict[str, list]) -> None:
        self.paths = list(paths)
        self.records: list[list] = []
        self._unchecked: list[int] = []  # positions of the files to decode
        for position, path in enumerate(self.paths):
            key = _size_and_time(path)
            record = known.get(str(path))
            if key is not None and isinstance(record, list) and len(record) == 3 and record[:2] == key:
                self.records.append(record)
            else:
                self.records.append([*(key or (None, None)), None])
                self._unchecked.append(position)

    @property
    def pending(self) -> int:
        return len(self._unchecked)

    def run(self, workers: int = 4, progress: bool = False) -> list[list]:
        """Decode the files without a trusted record, in `workers` threads, and return every file's record.

        Args:
            progress: Show a progress bar (on a terminal only).
        """
        unchecked = [self.paths[position] for position in self._unchecked]
        shown = None if progress else True  # tqdm's None: shown on a terminal only
        bar = tqdm(total=len(unchecked), desc="checking images", unit="img", leave=False, disable=shown)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, bar:
            for position, reason in zip(self._unchecked, pool.map(_reason_unreadable, unchecked), strict=True):
                self.records[position][2] = reason
                bar.update()
        self._unchecked = []
        return self.records


def _size_and_time(path: Path) -> list[int] | None:
    """The key of `path`'s record: its size and modification time (ns); None when it cannot be found."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _reason_unreadable(path: Path) -> str | None:
    """Why `path` cannot be decoded; None when it can."""
    try:
        load_rgb(path, min_size=64)
    except UnreadableImageError as error:
        return error.reason
    return None


def unreadable_errors(paths: list[Path], records: list[list]) -> list[UnreadableImageError]:
    """The unreadable files among `paths`, as their records (`ImageCheck`) say, in order."""
    return [
        UnreadableImageError(path, record[2])
        for path, record in zip(paths, records, strict=True)
        if record[2] is not None
    ]


def read_index(index: Path | None) -> dict[str, list]:
    """The records of `index`; none when there is no index, or it cannot be read (it is then rebuilt)."""
    if index is None or not index.is_file():
        return {}
    try:
        content = json.loads(index.read_text(encoding="utf-8"))
        files = content["files"] if content.get("version") == 1 else {}
    except (ValueError, KeyError, AttributeError, TypeError):
        return {}
    return files if isinstance(files, dict) else {}


def write_index(index: Path, paths: list[Path], records: list[list]) -> None:
    """Record the records of `paths` (`ImageCheck`) in `index`, atomically; files that cannot be found are left out,
    so that they are looked for again."""
    files = {str(path): record for path, record in zip(paths, records, strict=True) if record[0] is not None}
    index.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(index, json.dumps({"version": 1, "files": files}))
