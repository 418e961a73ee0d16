"""A dataset over (path, label) samples that survives unreadable files."""

import logging
from pathlib import Path

import torch
from torch.utils.data import Dataset, default_collate

from .decode import UnreadableImageError, load_rgb

logger = logging.getLogger("vggnet")


class ImageListDataset(Dataset):
    """Decodes `samples[i]`'s file with `load_rgb` and applies `transform`; an unreadable file yields None (and a
    warning), which `collate_skipping_failures` drops from the batch. `decode_size` (`Preprocess.decode_size`)
    lets huge JPEGs decode at reduced scale."""

    def __init__(self, samples: list[tuple[Path, int]], transform, decode_size: int | None) -> None:
        self.samples = samples
        self.transform = transform
        self.decode_size = decode_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        path, label = self.samples[index]
        try:
            image = load_rgb(path, self.decode_size)
        except UnreadableImageError as error:
            logger.warning("skipped unreadable image %s", error)
            return None
        return self.transform(image), label


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
