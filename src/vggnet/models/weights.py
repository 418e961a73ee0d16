"""The official pretrained weights: one table, and their download into the torch hub cache.

Every row is torchvision's `IMAGENET1K_V1` weights for that variant, with torchvision's verified metadata
(parameter count, GMACs at 224x224, ImageNet-1K accuracy). The SHA-256 prefix in each file name is checked on
download (by torch hub) and remembered in a small JSON file beside the weights (`<file>.verified.json`: size,
modification time, checked prefix), so a cached file is hashed again only when it changed, not on every load.
"""

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from urllib.error import HTTPError, URLError

import torch

from ..atomic import atomic_write_text
from ..data.preprocess import Preprocess

_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")


@dataclass(frozen=True)
class PretrainedWeights:
    """One set of official weights and what is known about it."""

    model: str
    tag: str
    url: str
    num_params: int
    gmacs: float
    acc1: float
    acc5: float
    dataset: str = "ImageNet-1K"
    # torchvision's ImageClassification preset for these weights: resize the short side to 256 (bilinear,
    # antialiased), centre-crop 224, normalise with the ImageNet mean and std.
    preprocess: Preprocess = Preprocess.imagenet()

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        """The leading hex digits of the file's SHA-256, as written in its name (`vgg16-397923af.pth`)."""
        match = _HASH_IN_NAME.search(self.file_name)
        if match is None:
            raise ValueError(f"weights file name {self.file_name!r} carries no '-<sha256 prefix>.' part")
        return match.group(1)

    @property
    def categories(self) -> list[str]:
        return imagenet_categories()

    def transforms(self):
        """The evaluation transform these weights expect (a PIL RGB image -> the network's input tensor), as
        torchvision's weights enums give it.

        >>> from PIL import Image
        >>> from vggnet.models import get_pretrained
        >>> get_pretrained("vgg16", "imagenet").transforms()(Image.new("RGB", (500, 375))).shape
        torch.Size([3, 224, 224])
        """
        return self.preprocess.transform()


# model, URL, parameters, GMACs at 224x224, ImageNet-1K acc@1 and acc@5 (%), all from torchvision's models/vgg.py.
_IMAGENET_ROWS = [
    ("vgg11", "https://download.pytorch.org/models/vgg11-8a719046.pth", 132863336, 7.609, 69.020, 88.628),
    ("vgg11_bn", "https://download.pytorch.org/models/vgg11_bn-6002323d.pth", 132868840, 7.609, 70.370, 89.810),
    ("vgg13", "https://download.pytorch.org/models/vgg13-19584684.pth", 133047848, 11.308, 69.928, 89.246),
    ("vgg13_bn", "https://download.pytorch.org/models/vgg13_bn-abd245e5.pth", 133053736, 11.308, 71.586, 90.374),
    ("vgg16", "https://download.pytorch.org/models/vgg16-397923af.pth", 138357544, 15.470, 71.592, 90.382),
    ("vgg16_bn", "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth", 138365992, 15.470, 73.360, 91.516),
    ("vgg19", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", 143667240, 19.632, 72.376, 90.876),
    ("vgg19_bn", "https://download.pytorch.org/models/vgg19_bn-c79401a0.pth", 143678248, 19.632, 74.218, 91.842),
]

PRETRAINED: dict[tuple[str, str], PretrainedWeights] = {
    (row[0], "imagenet"): PretrainedWeights(row[0], "imagenet", *row[1:]) for row in _IMAGENET_ROWS
}


@cache
def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1K class names, in the order of the official weights' outputs.

    >>> import vggnet
    >>> vggnet.imagenet_categories()[:3], len(vggnet.imagenet_categories())
    (['tench', 'goldfish', 'great white shark'], 1000)
    """
    text = resources.files("vggnet.models").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()


@cache
def imagenet_synsets() -> list[str]:
    """The WordNet ids of the same 1000 classes, in the same order (the sorted ids: ImageNet-1K's class index), as
    ImageNet's own folders are named (`val/n01440764/...` holds tench). The list is the one timm ships
    (timm/data/_info/imagenet_synsets.txt, Apache-2.0); each id's WordNet lemmas include the class name at its
    index, except torchvision's two renamed duplicates, `crane bird` and `maillot tank suit`."""
    text = resources.files("vggnet.models").joinpath("imagenet_synsets.txt").read_text(encoding="utf-8")
    return text.split()


def get_pretrained(model: str, tag: str) -> PretrainedWeights:
    """The table row for `model` (a canonical registry name) and `tag` (e.g. `"imagenet"`)."""
    if (model, tag) not in PRETRAINED:
        tags = sorted({t for m, t in PRETRAINED if m == model})
        offered = f"choose one of: {', '.join(tags)}" if tags else "no official weights exist for it"
        raise ValueError(
            f"unknown pretrained weights {tag!r} for {model}; {offered}, "
            f"or pass the path of a .pth/.pt/.safetensors file"
        )
    return PRETRAINED[(model, tag)]


def cache_path(weights: PretrainedWeights) -> Path:
    """Where the weights file lives in the torch hub cache (`$TORCH_HOME/hub/checkpoints/<file name>`)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.file_name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def memo_path(path: Path) -> Path:
    """Where the record of `path`'s last successful hash check lives (beside it, in the hub cache)."""
    return path.with_name(path.name + ".verified.json")


def _file_stamp(path: Path, hash_prefix: str) -> dict:
    """What identifies the file as checked: any change of size or modification time makes it unchecked."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_prefix": hash_prefix}


def _remember_verified(path: Path, hash_prefix: str) -> None:
    # A read-only cache (shared, or mounted) keeps no record: the file stays usable, it is only hashed on each load.
    with contextlib.suppress(OSError):
        atomic_write_text(memo_path(path), json.dumps(_file_stamp(path, hash_prefix)))


def _known_verified(path: Path, hash_prefix: str) -> bool:
    try:
        return json.loads(memo_path(path).read_text(encoding="utf-8")) == _file_stamp(path, hash_prefix)
    except (OSError, ValueError):  # no record, or a damaged one: hash the file
        return False


def fetch_pretrained(weights: PretrainedWeights, progress: bool = True) -> Path:
    """Return the path of the verified weights file, downloading it into the torch hub cache if needed.

    A download is written to a temporary file and renamed only after its hash matched, so a failed or corrupted
    download leaves no file behind. A cached file is hashed again only if its size or modification time changed
    since its last check (see `memo_path`).

    Raises:
        RuntimeError: the download failed (offline, server error) or its hash did not match, or a cached file
            is corrupted. The message says which file to put where.
    """
    path = cache_path(weights)
    if path.exists():
        if _known_verified(path, weights.hash_prefix):
            return path
        digest = sha256_of(path)
        if not digest.startswith(weights.hash_prefix):
            raise RuntimeError(
                f"cached weights {path} are corrupted (SHA-256 {digest[:16]}..., expected to start with "
                f"{weights.hash_prefix}); delete the file and run again to download it anew"
            )
        _remember_verified(path, weights.hash_prefix)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=weights.hash_prefix, progress=progress)
    except (URLError, OSError) as error:
        reason = (
            f"HTTP {error.code} {error.reason}" if isinstance(error, HTTPError) else getattr(error, "reason", error)
        )
        raise RuntimeError(
            f"could not download the {weights.tag} weights for {weights.model} from {weights.url} ({reason}). "
            f"On a machine without internet access, download that file elsewhere and put it at {path}, "
            f"or pass a local copy with --pretrained PATH (checkpoint_path=PATH in Python)"
        ) from error
    except RuntimeError as error:  # torch.hub's hash check
        raise RuntimeError(
            f"the download of {weights.url} is corrupted: {error}; nothing was saved. Run again to retry; "
            f"if it keeps failing, something between you and the server alters the file"
        ) from error
    _remember_verified(path, weights.hash_prefix)  # torch hub hashed it while downloading
    return path
