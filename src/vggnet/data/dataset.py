"""A dataset over (path, label) samples that survives unreadable files."""

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from .decode import UnreadableImageError, load_rgb

logger = logging.getLogger("vggnet")


class ImageListDataset(Dataset):
    """Decodes `samples[i]`'s file with `load_rgb` and applies `transform`; an unreadable file yields None (and a
    warning), which `collate_skipping_failures` drops from the batch. `decode_size` (`Preprocess.decode_size`)
    lets huge JPEGs decode at reduced scale. After `keep_decoded`, items come from the decoded pixels it kept."""

    def __init__(self, samples: list[tuple[Path, int]], transform, decode_size: int | None) -> None:
        self.samples = samples
        self.transform = transform
        self.decode_size = decode_size
        self._decoded: list[np.ndarray | None] | None = None  # `keep_decoded`'s pixels (None: unreadable)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        if self._decoded is None:
            image = self._decode(index)
        else:
            pixels = self._decoded[index]
            image = None if pixels is None else Image.fromarray(pixels)  # the decoded image, pixel for pixel
        return None if image is None else (self.transform(image), self.samples[index][1])

    def keep_decoded(self, threads: int) -> int:
        """Decode every image now, on `threads` threads, and keep its pixels (uint8, read-only) in memory: every
        later read skips the file and the decoder, and gets the same image. The transform still runs at every read,
        so random augmentation stays random. Loader processes forked afterwards share the pixels. Returns the bytes
        kept (`estimate_decoded_bytes` says how many beforehand)."""
        with ThreadPoolExecutor(threads) as pool:
            self._decoded = list(pool.map(self._decode_pixels, range(len(self))))
        return sum(pixels.nbytes for pixels in self._decoded if pixels is not None)

    def estimate_decoded_bytes(self, sample_size: int = 32) -> int:
        """About the bytes `keep_decoded` would keep, from `sample_size` images spread over the dataset."""
        if not self.samples:
            return 0
        indices = np.linspace(0, len(self) - 1, min(sample_size, len(self))).round().astype(int)
        # Quietly: an unreadable file is warned about once, when it is read for the run.
        decoded = (self._decode_pixels(index, warn=False) for index in indices.tolist())
        sizes = [pixels.nbytes for pixels in decoded if pixels is not None]
        return round(np.mean(sizes) * len(self)) if sizes else 0

    def _decode(self, index: int, warn: bool = True) -> Image.Image | None:
        try:
            return load_rgb(self.samples[index][0], self.decode_size)
        except UnreadableImageError as error:
            if warn:
                logger.warning("skipped unreadable image %s", error)
            return None

    def _decode_pixels(self, index: int, warn: bool = True) -> np.ndarray | None:
        image = self._decode(index, warn)
        if image is None:
            return None
        pixels = np.asarray(image)
        pixels.setflags(write=False)  # read by every later read (and loader process), changed by none
        return pixels


def collate_skipping_failures(batch: list) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Collate the readable samples; returns (images, labels, number of samples dropped)."""
    kept = [sample for sample in batch if sample is not None]
    if not kept:
        return torch.empty(0), torch.empty(0, dtype=torch.long), len(batch)
    images, labels = default_collate(kept)
    return images, labels, len(batch) - len(kept)


class ImagePathDataset(Dataset):
    """For inference: item `i` is (tensor, i, None), or (None, i, reason) when the file cannot be decoded;
    `decode_size` as for `ImageListDataset`."""

    def __init__(self, paths: list[str | Path], transform, decode_size: int | None) -> None:
        self.paths = paths
        self.transform = transform
        self.decode_size = decode_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int, str | None]:
        try:
            image = load_rgb(self.paths[index], self.decode_size)
            return self.transform(image), index, None
        except UnreadableImageError as error:
            return None, index, error.reason


def collate_inference(batch: list) -> tuple[torch.Tensor, list[int], list[tuple[int, str]]]:
    """(images of the readable items, their indices, (index, reason) of the unreadable ones)."""
    kept = [(image, index) for image, index, reason in batch if reason is None]
    failed = [(index, reason) for _, index, reason in batch if reason is not None]
    images = torch.stack([image for image, _ in kept]) if kept else torch.empty(0)
    return images, [index for _, index in kept], failed
