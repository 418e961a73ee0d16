"""The built-in dataset: scikit-learn's 1,797 real 8x8 handwritten digits as PNG files in ImageFolder layout.

    vggnet data digits --out data/digits

A fixed stratified split (80/20, seed 0) gives `train/<digit>/*.png` (1,437 images) and `val/<digit>/*.png` (360),
so training on it runs exactly the code path of a user's folder.
"""

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..outputs import output_folder

DIGITS_VAL_FRACTION = 0.2
_COMPLETE_MARKER = ".complete"


def default_cache_dir() -> Path:
    """`$VGGNET_HOME`, else `$XDG_CACHE_HOME/vggnet`, else `~/.cache/vggnet`."""
    if "VGGNET_HOME" in os.environ:
        return Path(os.environ["VGGNET_HOME"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "vggnet"


def digits_folder() -> Path:
    """The cached digits folder, written on first use."""
    folder = default_cache_dir() / "datasets" / "digits"
    if not (folder / _COMPLETE_MARKER).exists():
        write_digits(folder)
    return folder


def write_digits(out: str | Path) -> Path:
    """Write the digits dataset as PNG files under `out` (which must not exist or be empty) and return it.

    The files are written to a temporary folder beside `out` and renamed into place at the end, so an
    interrupted write leaves no half-written dataset behind.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if (out / _COMPLETE_MARKER).exists():
            return out
        raise ValueError(f"{out} already exists and is not empty; choose another --out or remove it")
    output_folder(out, "--out")
    digits = load_digits()
    indices = np.arange(len(digits.target))
    train_idx, val_idx = train_test_split(
        indices, test_size=DIGITS_VAL_FRACTION, stratify=digits.target, random_state=0
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for split, split_indices in (("train", train_idx), ("val", val_idx)):
            for index in sorted(split_indices):
                folder = staging / split / str(digits.target[index])
                folder.mkdir(parents=True, exist_ok=True)
                pixels = np.rint(digits.images[index] * (255 / 16)).astype(np.uint8)  # values are 0..16
                Image.fromarray(pixels).save(folder / f"{index:04d}.png")
        (staging / _COMPLETE_MARKER).touch()
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (out / _COMPLETE_MARKER).exists():  # another process finished the same write first
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
