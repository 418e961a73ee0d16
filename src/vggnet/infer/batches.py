"""Inputs for the batch verbs (`predict`, `embed`): files, folders and globs, decoded and preprocessed in
batches; what cannot be read becomes an error entry instead of stopping the others."""

import glob
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data import ImagePathDataset, collate_inference, list_images
from ..runtime import loader_workers
from .source import LoadedModel

_GLOB_CHARACTERS = set("*?[")


def expand_inputs(inputs: list[str | Path]) -> list[tuple[str, str | None]]:
    """One (path, error) pair per image: files as given, folders searched recursively for images (hidden files
    skipped), glob patterns expanded. An input that names nothing gives one pair with its error."""
    entries: list[tuple[str, str | None]] = []
    for item in map(str, inputs):
        path = Path(item).expanduser()
        if path.is_dir():
            images = list_images(path)
            entries.extend((str(image), None) for image in images)
            if not images:
                entries.append((item, "a folder with no images"))
        elif path.is_file():
            entries.append((item, None))
        elif _GLOB_CHARACTERS & set(item):
            matches = sorted(p for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            entries.extend((match, None) for match in matches)
            if not matches:
                entries.append((item, "no file matches this pattern"))
        else:
            entries.append((item, "no such file or folder"))
    return entries


def check_batch_size(batch_size: int) -> None:
    """Refuse a `--batch-size` below 1, before anything is read or written."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")


def inference_loader(loaded: LoadedModel, files: list[str | Path], batch_size: int, workers: int | None) -> DataLoader:
    """Batches of `files` decoded and preprocessed for `loaded` in `workers` processes (None: `loader_workers`'
    choice): (images of the readable ones, their indices, (index, reason) of the others), as `collate_inference`
    makes them."""
    dataset = ImagePathDataset(files, loaded.preprocess.transform(), loaded.preprocess.decode_size)
    num_workers = loader_workers(workers, len(files), batch_size)
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_inference)


class InputBatches:
    """Iterate over (positions, images) batches of the readable inputs (float32, on the model's device).

    `paths[position]` is each input's path; after iterating, `errors` maps the position of every input that is
    missing or unreadable to the reason.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        inputs: list[str | Path],
        batch_size: int,
        workers: int | None,
        progress: bool,
        desc: str,
    ) -> None:
        check_batch_size(batch_size)
        self.loaded = loaded
        entries = expand_inputs(inputs)
        self.paths = [path for path, _ in entries]
        self.errors = {position: error for position, (_, error) in enumerate(entries) if error is not None}
        self._readable = [position for position, (_, error) in enumerate(entries) if error is None]
        readable = [self.paths[p] for p in self._readable]
        self._loader = inference_loader(loaded, readable, batch_size, workers)
        self._bar = {"desc": desc, "disable": not progress or len(self._loader) < 2}

    def __iter__(self) -> Iterator[tuple[list[int], torch.Tensor]]:
        for images, indices, failures in tqdm(self._loader, **self._bar):
            for index, reason in failures:
                self.errors[self._readable[index]] = reason
            if indices:
                images = images.to(self.loaded.device, memory_format=torch.channels_last)
                yield [self._readable[i] for i in indices], images
