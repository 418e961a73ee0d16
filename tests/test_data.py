"""Dataset folders, robust decoding, transforms and the built-in digits."""

import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from conftest import write_image_folder
from PIL import Image
from torchvision.transforms._presets import ImageClassification

from vggnet.data import (
    ImageListDataset,
    Preprocess,
    UnreadableImageError,
    collate_skipping_failures,
    discover_splits,
    find_unreadable,
    load_rgb,
    write_digits,
)
from vggnet.data.digits import digits_folder
from vggnet.data.transforms import seeded_draws

IMAGENET = Preprocess.imagenet()

# ---- folders -----------------------------------------------------------------------------------------------


def test_train_val_layout(image_folder):
    splits = discover_splits(image_folder)
    assert splits.classes == ["ant", "bee", "cat"]
    assert splits.counts() == {"train": [8, 8, 8], "val": [4, 4, 4]}
    assert all(path.parent.parent.name == "train" for path, _ in splits.train)
    assert splits.layout == "train/ + val/"


@pytest.mark.parametrize("val_name", ["valid", "validation"])
def test_other_val_folder_names(tmp_path, val_name):
    root = write_image_folder(tmp_path / "d")
    (root / "val").rename(root / val_name)
    assert discover_splits(root).counts()["val"] == [4, 4, 4]


def test_single_tree_is_split_per_class_and_seeded(tmp_path):
    root = write_image_folder(tmp_path / "d", per_class=10, split=False)
    splits = discover_splits(root, val_split=0.2, seed=1)
    assert splits.counts() == {"train": [8, 8, 8], "val": [2, 2, 2]}
    assert discover_splits(root, val_split=0.2, seed=1).val == splits.val
    assert discover_splits(root, val_split=0.2, seed=2).val != splits.val
    assert not {p for p, _ in splits.train} & {p for p, _ in splits.val}


def test_hidden_files_are_ignored_and_subfolders_included(image_folder):
    (image_folder / "train" / "ant" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (image_folder / "train" / "ant" / "._ant_000.png").write_bytes(b"\0\5\26\7AppleDouble")
    (image_folder / "train" / ".cache").mkdir()
    nested = image_folder / "train" / "bee" / "more"
    nested.mkdir()
    Image.new("RGB", (8, 8)).save(nested / "extra.PNG")
    counts = discover_splits(image_folder).counts()
    assert counts["train"] == [8, 9, 8]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda root: root / "nowhere", "does not exist; pass --data DIR"),
        (lambda root: _remove(root / "val"), "has train/ but no val/"),
        (lambda root: _keep_classes(root, ["ant"]), r"1 class folder.*\['ant'\].*a classifier needs two or more"),
        (lambda root: _empty_class(root / "train" / "bee"), "class folder .*bee has no images"),
        (lambda root: _rename(root / "val" / "cat", root / "val" / "cow"), r"train: \['cat'\]; only in val: \['cow'\]"),
    ],
)  # fmt: skip
def test_unusable_layouts_are_refused(image_folder, mutate, message):
    target = mutate(image_folder) or image_folder
    with pytest.raises(ValueError, match=message):
        discover_splits(target)


def test_single_image_class_cannot_be_split(tmp_path):
    root = write_image_folder(tmp_path / "d", per_class=1, split=False)
    with pytest.raises(ValueError, match="single image"):
        discover_splits(root)


@pytest.mark.parametrize("val_split", [0.0, 1.0, 1.5, -0.2])
def test_a_val_split_must_hold_out_some_images_and_not_all(tmp_path, val_split):
    """The settings refuse a fraction outside [0, 1) before the data is read (0, holding nothing out, is for data
    with a val split of its own, and for runs saved with it); the split of data without one needs (0, 1)."""
    from vggnet.training.config import TrainConfig

    root = write_image_folder(tmp_path / "d", split=False)
    if val_split == 0.0:
        assert TrainConfig(data=str(root), val_split=val_split).val_split == 0.0
    else:
        with pytest.raises(ValueError, match=rf"^--val-split must be in \[0, 1\), got {val_split}; e\.g\. 0\.2 "):
            TrainConfig(data=str(root), val_split=val_split)
    with pytest.raises(
        ValueError,
        match=rf"must be in \(0, 1\) to hold images out of data without a val split, got {val_split}; e\.g\. 0\.2$",
    ):
        discover_splits(root, val_split=val_split)
    assert discover_splits(write_image_folder(tmp_path / "split"), val_split=0.0).val  # its own val/ folder


def _remove(path):
    import shutil

    shutil.rmtree(path)


def _keep_classes(root, keep):
    for split in ("train", "val"):
        for folder in (root / split).iterdir():
            if folder.name not in keep:
                _remove(folder)


def _empty_class(folder):
    for file in folder.iterdir():
        file.unlink()


def _rename(source, target):
    source.rename(target)


# ---- decoding ----------------------------------------------------------------------------------------------


def _saved(tmp_path, image, name, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def test_modes_become_rgb(tmp_path):
    grey = Image.fromarray(np.full((5, 7), 100, np.uint8))
    assert np.asarray(load_rgb(_saved(tmp_path, grey, "g.png"))).tolist()[0][0] == [100, 100, 100]
    palette = grey.convert("P")
    assert load_rgb(_saved(tmp_path, palette, "p.gif")).mode == "RGB"
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red in CMYK
    assert load_rgb(_saved(tmp_path, cmyk, "c.jpg")).getpixel((1, 1))[0] > 200
    assert load_rgb(_saved(tmp_path, Image.new("RGB", (3, 3)), "r.bmp")).size == (3, 3)
    assert load_rgb(_saved(tmp_path, Image.new("RGB", (3, 3)), "r.webp")).size == (3, 3)
    assert load_rgb(_saved(tmp_path, Image.new("RGB", (3, 3)), "r.TIFF")).size == (3, 3)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    image = load_rgb(_saved(tmp_path, rgba, "a.png"))
    assert image.getpixel((1, 1)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (255, 0, 0)
    la = Image.new("LA", (2, 2), (0, 128))  # black at half opacity: mid grey on white
    assert load_rgb(_saved(tmp_path, la, "la.png")).getpixel((0, 0)) == (127, 127, 127)
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.info["transparency"] = 1
    assert load_rgb(_saved(tmp_path, palette, "pt.png", transparency=1)).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)  # 0 .. 63000
    image = load_rgb(_saved(tmp_path, Image.fromarray(ramp), "deep.png"))
    values = np.asarray(image)[..., 0]
    assert values.min() == 0 and values.max() == round(63000 / 257)
    assert len(np.unique(values)) > 32  # a ramp, not a flat white image
    floats = Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), mode="F")
    values = np.asarray(load_rgb(_saved(tmp_path, floats, "f.tiff")))[..., 0]
    assert values.min() == 0 and values.max() == 255 and len(np.unique(values)) == 64


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (6, 3), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _saved(tmp_path, image, "rot.jpg", exif=exif)
    assert load_rgb(path).size == (3, 6)


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert load_rgb(path).getpixel((0, 0))[0] > 200


def _png_declaring(width, height) -> bytes:
    """A valid 1x1 PNG whose header claims `width` x `height` pixels."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


@pytest.fixture
def bad_files(tmp_path):
    good = _saved(tmp_path, Image.new("RGB", (16, 16), (9, 9, 9)), "good.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:40])
    jpeg = _saved(tmp_path, Image.new("RGB", (64, 64), (200, 10, 10)), "photo.jpg")
    truncated_jpeg = tmp_path / "cut.jpg"
    truncated_jpeg.write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) // 2])
    files = {
        "empty.jpg": b"",
        "text.jpg": b"this is not an image",
        "page.png": b"<html><body>404</body></html>",
        "bomb.png": _png_declaring(40_000, 40_000),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "folder.jpg").mkdir()
    bad = [tmp_path / name for name in files] + [truncated, truncated_jpeg, tmp_path / "folder.jpg"]
    return good, bad


def test_unreadable_files_raise_a_clear_error(bad_files):
    good, bad = bad_files
    assert load_rgb(good).size == (16, 16)
    for path in bad:
        with pytest.raises(UnreadableImageError) as error:
            load_rgb(path)
        assert str(path) in str(error.value)
    with pytest.raises(UnreadableImageError, match="decompression bomb"):
        load_rgb(bad[3])
    found = find_unreadable([good, *bad], workers=2)
    assert sorted(e.path for e in found) == sorted(str(p) for p in bad)


def test_dataset_skips_unreadable_files(bad_files):
    good, bad = bad_files
    transform = Preprocess(32, 32, mean=[0.5] * 3, std=[0.5] * 3).transform()
    dataset = ImageListDataset([(good, 0), (bad[0], 1), (good, 2)], transform, decode_size=None)
    images, labels, dropped = collate_skipping_failures([dataset[i] for i in range(3)])
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [0, 2] and dropped == 1


def test_a_dataset_kept_decoded_gives_the_same_items_and_skips_the_same_files(bad_files, tmp_path, caplog):
    good, bad = bad_files
    photo = _saved(
        tmp_path, Image.fromarray(np.random.default_rng(1).integers(0, 256, (90, 120, 3), np.uint8)), "p.jpg"
    )
    samples = [(good, 0), (bad[0], 1), (photo, 2), (bad[4], 1)]
    dataset = ImageListDataset(samples, Preprocess(32, 36).transform(train=True, augment="trivial"), decode_size=40)
    torch.manual_seed(3)
    read = [dataset[i] for i in range(len(samples))]
    # What load_rgb gives: the 16x16 PNG, and the 120x90 JPEG decoded at half scale for a short side of 40
    pixels = 16 * 16 * 3 + 60 * 45 * 3
    caplog.clear()  # the reads above warned about the unreadable files; the cache warns once more about each
    with caplog.at_level("WARNING", logger="vggnet"):
        assert dataset.estimate_decoded_bytes() == pixels * 2  # the two readable ones' mean, for four images
        assert dataset.keep_decoded(threads=2) == pixels
    warned = [record.getMessage() for record in caplog.records]
    assert [sum(str(path) in message for message in warned) for path in (bad[0], bad[4])] == [1, 1]
    for path, _ in samples:  # no file is read again
        if path.is_file():
            path.unlink()
    torch.manual_seed(3)
    kept = [dataset[i] for i in range(len(samples))]
    assert [item is None for item in kept] == [item is None for item in read] == [False, True, False, True]
    for (image, label), (expected, expected_label) in zip(kept[::2], read[::2], strict=True):
        assert label == expected_label and torch.equal(image, expected)


# ---- transforms --------------------------------------------------------------------------------------------


def test_eval_transform_equals_torchvisions_preset_for_imagenet_weights():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    ours = IMAGENET.transform()(image)
    theirs = ImageClassification(crop_size=224, resize_size=256)(image)
    assert ours.shape == theirs.shape == (3, 224, 224)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def torchvision_eval(resize: int, crop: int, interpolation: str, preprocess: Preprocess):
    """torchvision's v2 evaluation ops on a PIL image: the reference for vggnet's own evaluation transform."""
    from torchvision.transforms import InterpolationMode, v2

    return v2.Compose([
        v2.Resize(resize, interpolation=InterpolationMode(interpolation), antialias=True),
        v2.CenterCrop(crop),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(preprocess.mean), std=list(preprocess.std)),
    ])  # fmt: skip


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize(
    "size", [(300, 400), (400, 300), (57, 91), (256, 256), (20, 30), (60, 17)]
)  # up to 4:1 (beyond, the cut comes first)
def test_eval_transform_is_torchvisions_v2_pixel_for_pixel(interpolation, size):
    """The evaluation transform does without torchvision: it must give exactly what torchvision's v2 ops give on a PIL
    image (resize of the short side with antialiasing, centre crop with zero padding, scale, normalise)."""
    preprocess = Preprocess(32, 37, interpolation=interpolation)
    height, width = size
    image = Image.fromarray(np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8))
    reference = torchvision_eval(37, 32, interpolation, preprocess)
    ours = preprocess.transform()(image)
    assert ours.shape == (3, 32, 32) and ours.dtype == torch.float32
    assert torch.equal(ours, reference(image))
    # A crop larger than the resized image is padded with zeros (before normalisation), as torchvision pads.
    small = Preprocess(48, 24, interpolation=interpolation)
    reference_small = torchvision_eval(24, 48, interpolation, preprocess)
    assert torch.equal(small.transform()(image), reference_small(image))


def test_inference_does_not_import_torchvision(trained, tmp_path):
    """torchvision's import pulls in torch._dynamo (seconds on every `vggnet predict`); only training needs it."""
    checkpoint, data = trained
    image = next((data / "val").rglob("*.png"))
    code = (
        "import sys, vggnet; "
        f"records = vggnet.predict({str(checkpoint)!r}, [{str(image)!r}], topk=1); "
        "assert 'top' in records[0], records; "
        "print(sorted(name for name in ('torchvision', 'torch._dynamo') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_extreme_aspect_ratios_stay_small():
    ribbon = Image.new("RGB", (4000, 3), (200, 10, 10))
    x = IMAGENET.transform()(ribbon)
    assert x.shape == (3, 224, 224)  # cut to 12x3 first, not resized to 341,333x256
    assert torch.isfinite(x).all()
    # Up to 4:1 the cut changes nothing: the same pixels as torchvision's preset.
    wide = Image.fromarray(np.random.default_rng(3).integers(0, 256, (100, 390, 3), dtype=np.uint8))
    torch.testing.assert_close(IMAGENET.transform()(wide), ImageClassification(crop_size=224)(wide))
    # Beyond it, the centre that the crop keeps is the same too.
    strip = Image.fromarray(np.random.default_rng(4).integers(0, 256, (60, 900, 3), dtype=np.uint8))
    torch.testing.assert_close(
        IMAGENET.transform()(strip), ImageClassification(crop_size=224)(strip), atol=0.05, rtol=0
    )
    for augment in ("basic", "trivial"):
        assert IMAGENET.transform(train=True, augment=augment)(ribbon).shape == (3, 224, 224)


@pytest.mark.parametrize("augment", ["none", "basic", "trivial"])
def test_train_transforms_give_the_network_input(augment):
    image = Image.new("RGB", (50, 40), (10, 200, 30))
    preprocess = Preprocess(32, 36, mean=[0.5] * 3, std=[0.25] * 3, interpolation="bicubic")
    x = preprocess.transform(train=True, augment=augment)(image)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    if augment == "none":
        torch.testing.assert_close(x, preprocess.transform()(image))
    with pytest.raises(ValueError, match="unknown augment 'strong'; choose one of: none, basic, trivial"):
        preprocess.transform(train=True, augment="strong")


def test_seeded_draws_seed_the_augmentation_and_give_the_generator_back():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    augment = Preprocess(32, 36).transform(train=True, augment="trivial")
    torch.manual_seed(123)
    with seeded_draws(7):
        first = augment(image)
    after = torch.rand(4)
    torch.manual_seed(7)
    torch.testing.assert_close(first, augment(image), rtol=0, atol=0)  # torch.manual_seed's draws
    with seeded_draws(7):
        torch.testing.assert_close(augment(image), first, rtol=0, atol=0)
    torch.manual_seed(123)
    torch.testing.assert_close(after, torch.rand(4), rtol=0, atol=0)  # as if the block had drawn nothing
    with seeded_draws(8):
        assert not torch.equal(augment(image), first)


# ---- the preprocessing record -----------------------------------------------------------------------------

# What checkpoints have always stored for ImageNet preprocessing at 224 (and the official weights' record).
IMAGENET_RECORD = {
    "img_size": 224, "resize": 256, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
    "interpolation": "bilinear",
}  # fmt: skip


def test_the_record_keeps_the_checkpoint_format(trained):
    assert Preprocess.imagenet().to_dict() == IMAGENET_RECORD
    assert Preprocess.from_checkpoint(IMAGENET_RECORD) == Preprocess.imagenet()
    assert Preprocess.imagenet(32, crop_pct=1.0).to_dict() == {**IMAGENET_RECORD, "img_size": 32, "resize": 32}
    assert Preprocess.imagenet(32).resize == 37  # round(32 / 0.875)
    without_interpolation = {k: v for k, v in IMAGENET_RECORD.items() if k != "interpolation"}
    assert Preprocess.from_checkpoint(without_interpolation).interpolation == "bilinear"
    # A training run's checkpoint reads back to the very record it holds.
    record = torch.load(trained[0], weights_only=True)["preprocess"]
    assert Preprocess.from_checkpoint(record).to_dict() == record
    assert len({Preprocess.imagenet(), Preprocess.from_checkpoint(IMAGENET_RECORD)}) == 1  # hashable, one value


def test_decode_size_and_another_crop_side():
    assert Preprocess(224, 256).decode_size == 512
    assert Preprocess(64, 32).decode_size == 128
    assert Preprocess.imagenet(224).at_img_size(112) == Preprocess.imagenet(112)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"img_size": "224"}, r"img_size='224' must be an integer >= 1"),
        ({"resize": 0}, r"resize=0 must be an integer >= 1"),
        ({"mean": []}, r"mean=\[\] must be a list of numbers, one per channel"),
        ({"mean": [0.5, "x", 0.5]}, r"mean=\[0.5, 'x', 0.5\] must hold numbers only"),
        ({"std": [0.2, 0.0, 0.2]}, r"std=\(0.2, 0.0, 0.2\) must be positive"),
        ({"std": [0.2, 0.2]}, r"must have one value per channel each"),
        ({"interpolation": "lanczos"}, r"unknown preprocess interpolation 'lanczos'; choose one of: bilinear, bicubic"),
        ({"resize": None}, r"resize=None must be an integer"),
        ({"crop": 0.9}, r"has entries of no meaning here: crop"),
    ],
)
def test_a_bad_record_names_the_bad_value(change, message):
    with pytest.raises(ValueError, match=message):
        Preprocess.from_checkpoint({**IMAGENET_RECORD, **change})


def test_an_incomplete_record_or_crop_is_refused():
    with pytest.raises(ValueError, match="lacks resize, std"):
        Preprocess.from_checkpoint({"img_size": 224, "mean": [0.5] * 3})
    with pytest.raises(ValueError, match="must be a dict, got list"):
        Preprocess.from_checkpoint([224, 256])
    with pytest.raises(ValueError, match=r"crop_pct=0 must be in \(0, 1\]"):
        Preprocess.imagenet(224, crop_pct=0)


# ---- digits ------------------------------------------------------------------------------------------------


def test_digits_written_as_an_image_folder(tmp_path):
    from sklearn.datasets import load_digits

    root = write_digits(tmp_path / "digits")
    splits = discover_splits(root)
    assert splits.classes == [str(d) for d in range(10)]
    assert (len(splits.train), len(splits.val)) == (1437, 360)
    digits = load_digits()
    expected = np.bincount(digits.target)
    counts = splits.counts()
    assert (np.array(counts["train"]) + np.array(counts["val"])).tolist() == expected.tolist()
    # Stratified: every class holds out about 20%.
    assert all(abs(v / (t + v) - 0.2) < 0.02 for t, v in zip(counts["train"], counts["val"], strict=True))
    path, label = splits.val[0]
    index = int(path.stem)
    assert digits.target[index] == label
    pixels = np.asarray(Image.open(path))
    assert pixels.tolist() == np.rint(digits.images[index] * 255 / 16).astype(np.uint8).tolist()
    assert write_digits(root) == root  # already complete: kept as it is


def test_digits_refuse_a_folder_in_use(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my files")
    with pytest.raises(ValueError, match="already exists and is not empty"):
        write_digits(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "my files"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_digits_cache_follows_vggnet_home(tmp_path, monkeypatch):
    monkeypatch.setenv("VGGNET_HOME", str(tmp_path / "home"))
    assert digits_folder() == tmp_path / "home" / "datasets" / "digits"
    assert (tmp_path / "home" / "datasets" / "digits" / "val" / "9").is_dir()
