"""Training batches decoded and augmented on the training device (`vggnet train --decode device`).

With the default (`--decode workers`) the loader processes decode each image with PIL and augment it; a GPU that
trains faster than the CPU's cores can decode then waits for them. Here the loader processes only read each file
and look at its header (`EncodedImageDataset`): a JPEG that nvJPEG can decode (RGB or grayscale) travels as its
bytes with its EXIF orientation, any other image (PNG, CMYK JPEG, 16-bit TIFF...) is decoded by `load_rgb` as
usual and travels as 8-bit pixels; a batch of them travels as one tensor (`collate_encoded`). On the device
(`DeviceAugment`), the JPEGs of a batch are decoded together (`torchvision.io.decode_jpeg`: nvJPEG on a GPU,
libjpeg-turbo on a CPU), turned upright, cropped, resized, flipped and normalised there. A JPEG whose data the
decoder refuses falls back to `load_rgb`'s decoding; one that PIL cannot read either is left out of its batch with
a warning, as the loader processes leave it out.

The augmentation's random draws are seeded per batch (`seed`: the run's seed, epoch, process and step), so that a
resumed run draws what the uninterrupted one drew, whatever the RNG's state before.
"""

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .decode import UnreadableImageError, decode_image
from .preprocess import Preprocess
from .transforms import seeded_draws, train_geometry

logger = logging.getLogger("vggnet")

# The EXIF tag that says how the camera was held.
_ORIENTATION = 0x0112
# JPEG colour modes that nvJPEG decodes to RGB (CMYK and YCCK go through PIL).
_DEVICE_MODES = ("RGB", "L")


class EncodedImage(NamedTuple):
    """One image as the loader processes hand it over: a JPEG's bytes (`encoded`, to decode on the device, then
    turn by its EXIF `orientation`, 1-8), or decoded RGB pixels (3, H, W) uint8, already upright."""

    data: torch.Tensor
    encoded: bool
    orientation: int = 1


def read_for_device(path: str | Path, min_size: int | None = None) -> EncodedImage:
    """`path` as the device will decode it: a JPEG nvJPEG can decode as its bytes, anything else decoded here by
    `decode_image` (at reduced scale down to `min_size`, as `load_rgb`); raises `UnreadableImageError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UnreadableImageError(path, error.strerror or type(error).__name__) from error
    # A header PIL cannot read is left to `decode_image`, which names the reason.
    with contextlib.suppress(Exception), Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG" and image.mode in _DEVICE_MODES:
            orientation = image.getexif().get(_ORIENTATION, 1)
            return EncodedImage(torch.frombuffer(bytearray(data), dtype=torch.uint8), True, orientation)
    return EncodedImage(_pixels(decode_image(data, str(path), min_size)), False)


class EncodedImageDataset(Dataset):
    """(`read_for_device(path)`, label) for each of `samples`; an unreadable file yields None (and a warning),
    which `collate_encoded` drops from the batch."""

    def __init__(self, samples: list[tuple[Path, int]], decode_size: int | None) -> None:
        self.samples = samples
        self.decode_size = decode_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[EncodedImage, int] | None:
        path, label = self.samples[index]
        try:
            return read_for_device(path, self.decode_size), label
        except UnreadableImageError as error:
            logger.warning("skipped unreadable image %s", error)
            return None


class EncodedBatch(NamedTuple):
    """A batch of `EncodedImage` in one tensor: every image's bytes or pixels one after the other in `data`, so
    that it crosses from a loader process in one transfer (a tensor per image costs one each: a third of the rate
    of one worker, measured on 500x375 JPEGs). `ends[i]` is where image i ends; `shapes[i]` is None for a JPEG's
    bytes, else its pixels' shape."""

    data: torch.Tensor
    ends: list[int]
    shapes: list[tuple[int, ...] | None]
    orientations: list[int]

    def images(self) -> list[EncodedImage]:
        """The images, each a view into `data`."""
        starts = [0, *self.ends[:-1]]
        return [
            EncodedImage(self.data[start:end] if shape is None else self.data[start:end].view(shape), shape is None,
                         orientation)
            for start, end, shape, orientation in zip(starts, self.ends, self.shapes, self.orientations, strict=True)
        ]  # fmt: skip


def collate_encoded(batch: list) -> tuple[EncodedBatch, torch.Tensor, int]:
    """(the readable images packed in one `EncodedBatch`, their labels, the number of samples dropped), as
    `collate_skipping_failures` collates decoded ones."""
    kept = [sample for sample in batch if sample is not None]
    images = [image for image, _ in kept]
    data = torch.cat([image.data.reshape(-1) for image in images]) if images else torch.empty(0, dtype=torch.uint8)
    ends = np.cumsum([image.data.numel() for image in images], dtype=np.int64).tolist()
    shapes = [None if image.encoded else tuple(image.data.shape) for image in images]
    packed = EncodedBatch(data, ends, shapes, [image.orientation for image in images])
    return packed, torch.tensor([label for _, label in kept], dtype=torch.long), len(batch) - len(kept)


class DeviceAugment:
    """Decodes an `EncodedBatch` on `device` and applies the training transform there: the same random
    resized crop, flip (and TrivialAugmentWide) as the loader processes apply with PIL, or for `augment="none"`
    the evaluation's resize and centre crop, then scaling to [0, 1] and normalisation.

    Args:
        preprocess: The run's preprocessing (crop side, resize, interpolation, mean and std).
        augment: `"none"`, `"basic"` or `"trivial"`, as `Preprocess.transform`.
        device: Where to decode and augment (the training device; a CPU works too, through libjpeg-turbo).
    """

    def __init__(self, preprocess: Preprocess, augment: str, device: torch.device) -> None:
        from torchvision.transforms import v2

        self.device = device
        self.geometry = v2.Compose(train_geometry(preprocess, augment))
        # On a GPU the batch is made on a stream of its own, while the training step queued before it runs.
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.mean = torch.tensor(preprocess.mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(preprocess.std, device=device).view(1, -1, 1, 1) * 255

    def __call__(self, images: EncodedBatch, labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(the batch as normalised float32 (N, 3, S, S) channels_last, its labels), both on the device; images
        that cannot be decoded are left out with their labels."""
        if self.stream is None:
            return self._batch(images, labels, seed)
        consumer = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.stream):
            # nvJPEG's hardware decoder writes its outputs without waiting for the work queued on its stream, into
            # memory that PyTorch's allocator may have handed back from that work (pytorch/vision#9606,
            # meta-pytorch/torchcodec#1634): here, NaNs in training. This stream's work (the last batch's) is
            # finished first; the training step's, on the consumer's stream, never shares its memory.
            self.stream.synchronize()
            batch, labels = self._batch(images, labels, seed)
        consumer.wait_stream(self.stream)
        for tensor in (batch, labels):
            tensor.record_stream(consumer)  # not reused by this stream until the step has read it
        return batch, labels

    def _batch(self, images: EncodedBatch, labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        decoded = self._decode(images.images())
        kept = [index for index, image in enumerate(decoded) if image is not None]
        labels = labels[kept].to(self.device, non_blocking=True)
        if not kept:
            return torch.empty(0, device=self.device), labels
        with seeded_draws(seed):
            batch = torch.stack([self.geometry(decoded[index]) for index in kept])
        batch = batch.float().sub_(self.mean).div_(self.std)
        return batch.contiguous(memory_format=torch.channels_last), labels

    def _decode(self, images: list[EncodedImage]) -> list[torch.Tensor | None]:
        """Each image as upright RGB pixels (3, H, W) uint8 on the device, or None where it cannot be decoded."""
        decoded = [None if image.encoded else image.data.to(self.device, non_blocking=True) for image in images]
        encoded = [index for index, image in enumerate(images) if image.encoded]
        if not encoded:
            return decoded
        try:  # all at once (nvJPEG decodes a batch faster than its images one by one)
            pixels = _decode_jpegs([images[index].data for index in encoded], self.device)
            for index, image in zip(encoded, pixels, strict=True):
                decoded[index] = orient(image, images[index].orientation)
        except RuntimeError:  # one of them is bad, and the call returns nothing: one by one
            for index in encoded:
                decoded[index] = self._decode_one(images[index], index)
        return decoded

    def _decode_one(self, image: EncodedImage, index: int) -> torch.Tensor | None:
        try:
            return orient(_decode_jpegs([image.data], self.device)[0], image.orientation)
        except RuntimeError:
            pass
        try:  # what the decoder refused, PIL may still read (as the loader processes would have)
            return _pixels(decode_image(image.data.numpy().tobytes(), f"image {index} of the batch")).to(self.device)
        except UnreadableImageError as error:
            logger.warning("skipped unreadable image %s", error)
            return None


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Pixels (..., H, W) as stored, turned upright by EXIF `orientation` (1-8), as PIL's `exif_transpose` turns
    them."""
    if orientation in (5, 6, 7, 8):  # the stored rows are the picture's columns
        image = image.transpose(-2, -1)
    flip = {2: (-1,), 3: (-2, -1), 4: (-2,), 6: (-1,), 7: (-2, -1), 8: (-2,)}.get(orientation)
    return image.flip(flip) if flip else image


def _decode_jpegs(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():  # torchvision 0.29 points to TorchCodec, which nvJPEG users can't yet rely on
        warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def _pixels(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as (3, H, W) uint8."""
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()
