"""`vggnet train --decode device`: what the loader processes hand over, the decoding and augmentation on the device
(here the CPU, through the same code as on a GPU; tests/test_cuda.py runs it with nvJPEG), and runs that learn and
resume exactly with it."""

import numpy as np
import pytest
import torch
from conftest import tiny_train
from PIL import Image

from vggnet.data import Preprocess, load_rgb
from vggnet.data.decode import UnreadableImageError
from vggnet.data.device_decode import (
    DeviceAugment,
    EncodedImageDataset,
    collate_encoded,
    orient,
    read_for_device,
)
from vggnet.training import loop, train

CPU = torch.device("cpu")
# PIL's transposes for each EXIF orientation, as `ImageOps.exif_transpose` applies them.
EXIF_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # fmt: skip


def _photo(width=48, height=32, seed=0) -> np.ndarray:
    """Smooth colour gradients (what JPEG keeps nearly exactly)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    a, b, c = rng.uniform(30, 220, size=(3, 3))
    return np.clip(np.stack([a[i] + b[i] * x * 0.3 + c[i] * y * 0.3 for i in range(3)], -1), 0, 255).astype(np.uint8)


def _save_jpeg(path, pixels, orientation=None, mode="RGB"):
    image = Image.fromarray(pixels).convert(mode)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_turns_pixels_as_pil_turns_them(orientation):
    pixels = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    expected = Image.fromarray(pixels)
    if orientation in EXIF_TRANSPOSES:
        expected = expected.transpose(EXIF_TRANSPOSES[orientation])
    turned = orient(torch.from_numpy(pixels).permute(2, 0, 1), orientation)
    assert torch.equal(turned.permute(1, 2, 0), torch.from_numpy(np.array(expected)))


def test_the_loader_hands_over_jpeg_bytes_and_decodes_the_rest(tmp_path):
    pixels = _photo()
    rgb = _save_jpeg(tmp_path / "rgb.jpg", pixels, orientation=6)
    gray = _save_jpeg(tmp_path / "gray.jpg", pixels, mode="L")
    cmyk = _save_jpeg(tmp_path / "cmyk.jpg", pixels, mode="CMYK")
    png = tmp_path / "image.png"
    Image.fromarray(pixels).save(png)

    read = read_for_device(rgb)
    assert read.encoded and read.orientation == 6 and read.data.numpy().tobytes() == rgb.read_bytes()
    assert read_for_device(gray).encoded  # nvJPEG decodes grayscale to RGB
    for path in (cmyk, png):  # decoded here, as the loader decodes them without --decode device
        read = read_for_device(path)
        assert not read.encoded and read.data.dtype == torch.uint8
        assert torch.equal(read.data.permute(1, 2, 0), torch.from_numpy(np.array(load_rgb(path))))

    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnreadableImageError, match="notes.txt: not an image"):
        read_for_device(tmp_path / "notes.txt")
    with pytest.raises(UnreadableImageError, match="missing.jpg"):
        read_for_device(tmp_path / "missing.jpg")


def test_device_decoding_gives_the_loaders_pixels_and_leaves_out_what_no_decoder_reads(tmp_path, caplog):
    pixels = _photo(40, 24)
    upright = _save_jpeg(tmp_path / "upright.jpg", pixels)
    turned = _save_jpeg(tmp_path / "turned.jpg", pixels, orientation=8)
    png = tmp_path / "image.png"
    Image.fromarray(pixels).save(png)
    truncated = tmp_path / "truncated.jpg"
    data = upright.read_bytes()
    truncated.write_bytes(data[: data.index(b"\xff\xda") + 20])  # the whole header, the image data cut short
    samples = [(upright, 0), (turned, 1), (truncated, 2), (png, 3)]
    dataset = EncodedImageDataset(samples, decode_size=None)
    images, labels, dropped = collate_encoded([dataset[i] for i in range(len(dataset))])
    assert dropped == 0 and labels.tolist() == [0, 1, 2, 3]
    # One tensor for the batch, each image a view of it, as the loader read it.
    unpacked = images.images()
    assert [image.encoded for image in unpacked] == [True, True, True, False]
    assert unpacked[0].data.numpy().tobytes() == upright.read_bytes()
    assert torch.equal(unpacked[3].data, read_for_device(png).data)
    assert all(
        image.data.untyped_storage().data_ptr() == images.data.untyped_storage().data_ptr() for image in unpacked
    )

    # No augmentation, and the crop the image's own size: the output is the decoded image, normalised.
    preprocess = Preprocess(img_size=24, resize=24, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    augment = DeviceAugment(preprocess, "none", CPU)
    with caplog.at_level("WARNING", logger="vggnet"):
        batch, kept = augment(images, labels, seed=0)
    assert "skipped unreadable image" in caplog.text  # the truncated JPEG: neither decoder reads it
    assert kept.tolist() == [0, 1, 3]
    assert batch.shape == (3, 3, 24, 24) and batch.is_contiguous(memory_format=torch.channels_last)

    def expected(path):  # PIL's decoding (EXIF applied), resized as the evaluation resizes
        image = load_rgb(path)
        return torch.from_numpy(np.array(image.resize((24 * image.width // image.height, 24)), np.float32) / 255)

    # The orientation-8 photo is upright after decoding: 24 wide, 40 high, centre-cropped to 24x24.
    assert batch[1].shape == (3, 24, 24)
    for index, path in ((0, upright), (2, png)):
        reference = expected(path).permute(2, 0, 1)
        left = (reference.shape[-1] - 24) // 2
        torch.testing.assert_close(batch[index], reference[..., left : left + 24], atol=4 / 255, rtol=0)
    upright_turned = torch.from_numpy(np.array(load_rgb(turned), np.float32) / 255).permute(2, 0, 1)
    assert upright_turned.shape == (3, 40, 24)  # PIL turned it the same way
    top = round((40 - 24) / 2)  # the evaluation's centre crop of a 24x40 image
    torch.testing.assert_close(batch[1], upright_turned[:, top : top + 24], atol=4 / 255, rtol=0)


def test_the_augmentation_is_a_function_of_its_seed(tmp_path):
    paths = [_save_jpeg(tmp_path / f"{i}.jpg", _photo(64, 48, seed=i)) for i in range(4)]
    images, labels, _ = collate_encoded([(read_for_device(path), i) for i, path in enumerate(paths)])
    augment = DeviceAugment(Preprocess.imagenet(32), "trivial", CPU)
    first, _ = augment(images, labels, seed=7)
    torch.manual_seed(123)  # the global generator's state does not matter
    again, _ = augment(images, labels, seed=7)
    other, _ = augment(images, labels, seed=8)
    assert first.shape == (4, 3, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)


def _jpeg_folder(root, classes=("red", "green", "blue"), per_class=8):
    colours = [(220, 40, 40), (40, 200, 40), (40, 60, 220)]
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", per_class // 2)):
        for index, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                noise = rng.integers(-30, 30, size=(24, 30, 3))
                pixels = np.clip(np.array(colours[index]) + noise, 0, 255).astype(np.uint8)
                _save_jpeg(root / split / name / f"{i}.jpg", pixels, orientation=1 + i % 8)
    return root


class Crash(Exception):
    pass


def test_a_run_decoding_on_the_device_learns_and_resumes_exactly(tmp_path, monkeypatch, caplog):
    data = _jpeg_folder(tmp_path / "data")
    settings = {"decode": "device", "augment": "basic", "deterministic": True, "seed": 3, "epochs": 4}
    with caplog.at_level("WARNING", logger="vggnet"):
        full = tiny_train(data, tmp_path / "runs", name="full", **settings)
    assert "--decode device on the CPU decodes in the training process" in caplog.text  # it works, slowly
    assert full.best["val_top1"] >= 0.9  # three colours
    assert "decode: device" in (full.run_dir / "config.yaml").read_text()

    original = loop._Run._end_epoch

    def end_epoch_then_crash(self):
        row = original(self)
        if self.epoch == 2:
            raise Crash
        return row

    with monkeypatch.context() as patch:
        patch.setattr(loop._Run, "_end_epoch", end_epoch_then_crash)
        with pytest.raises(Crash):
            tiny_train(data, tmp_path / "runs", name="cut", **settings)
    resumed = train(resume=tmp_path / "runs" / "cut" / "last.pt")
    # The augmentation's draws are seeded per step: the resumed epochs crop and flip as the uninterrupted run did.
    final = torch.load(full.run_dir / "last.pt", weights_only=True)["state_dict"]
    for key, value in torch.load(resumed.run_dir / "last.pt", weights_only=True)["state_dict"].items():
        assert torch.equal(value, final[key]), key


def test_the_decode_flag_names_its_choices():
    from vggnet.training import TrainConfig

    with pytest.raises(ValueError, match="unknown --decode 'gpu'; choose one of: workers, device"):
        TrainConfig(decode="gpu")


def test_a_batch_crosses_from_a_loader_process_in_one_tensor(tmp_path):
    jpeg = _save_jpeg(tmp_path / "a.jpg", _photo())
    png = tmp_path / "b.png"
    Image.fromarray(_photo(20, 10)).save(png)
    (tmp_path / "c.jpg").write_text("not an image")
    samples = [(jpeg, 5), (tmp_path / "c.jpg", 6), (png, 7)]
    loader = torch.utils.data.DataLoader(
        EncodedImageDataset(samples, None), batch_size=3, num_workers=1, collate_fn=collate_encoded
    )
    ((batch, labels, dropped),) = list(loader)
    assert dropped == 1 and labels.tolist() == [5, 7]
    assert batch.data.dim() == 1 and batch.shapes == [None, (3, 10, 20)]
    first, second = batch.images()
    assert first.encoded and first.data.numpy().tobytes() == jpeg.read_bytes()
    assert torch.equal(second.data.permute(1, 2, 0), torch.from_numpy(np.array(load_rgb(png))))


def test_a_large_seed_still_seeds_each_step(tmp_path):
    # Each step's seed combines the run's seed, epoch, process and step; it must stay within torch's 64 bits.
    data = _jpeg_folder(tmp_path / "data")
    result = tiny_train(data, tmp_path / "runs", decode="device", seed=2**32 - 1, epochs=1)
    assert result.metrics["epoch"] == 1
    with pytest.raises(ValueError, match=r"--seed must be in \[0, 2\*\*32\), got 4294967296"):
        tiny_train(data, tmp_path / "runs", seed=2**32)
