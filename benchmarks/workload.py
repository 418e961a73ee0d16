"""What the benchmark scripts measure on: the machine's name, a random-weights checkpoint and photo-like JPEGs."""

import platform
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import vggnet
from vggnet.training.checkpoint import model_checkpoint


def cpu_name() -> str:
    """The CPU's model name (as `lscpu` shows it), or what `platform` knows."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.machine()


def make_checkpoint(folder: Path, img_size: int = 224, width_mult: float = 0.5) -> Path:
    """A random-weights vgg11 (compact head, ten classes) at `img_size` and `width_mult`, saved as a vggnet
    checkpoint: the commands read its classes and preprocessing from it. At 224 px and width 1/2 an image takes
    about 25 ms on two AMD EPYC cores."""
    model = vggnet.create_model("vgg11", num_classes=10, head="compact", width_mult=width_mult)
    preprocess = vggnet.Preprocess.imagenet(img_size).to_dict()
    runtime = {"device": "cpu", "precision": "fp32"}
    content = model_checkpoint(model, [f"class{i}" for i in range(10)], preprocess, {}, 0, {}, runtime)
    path = folder / f"vgg11_random_{img_size}.pt"
    torch.save(content, path)
    return path


def make_images(folder: Path, count: int = 12, size: tuple[int, int] = (500, 375)) -> list[Path]:
    """`count` distinct photo-like JPEGs (smooth colour gradients with grain) of `size` (width, height): by
    default 500x375, ImageNet's typical size."""
    rng = np.random.default_rng(0)
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / width
    paths = []
    for number in range(count):
        a, b, c = rng.uniform(0, 255, size=(3, 3))
        pixels = np.stack([a[i] * x + b[i] * y + c[i] * x * y for i in range(3)], axis=-1)
        pixels = np.clip(pixels + rng.normal(0, 12, size=pixels.shape), 0, 255).astype(np.uint8)
        path = folder / f"photo_{number:02d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths
