"""Find the images and classes of a dataset folder, and split it into train and validation sets.

Two layouts are accepted, with class names taken from the sorted sub-folder names as torchvision's ImageFolder does:

    DIR/train/<class>/*  and  DIR/val/<class>/*      (also valid/ or validation/)
    DIR/<class>/*                                   split per class by --val-split, seeded
"""

import logging
import random
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
VAL_FOLDER_NAMES = ("val", "valid", "validation")
EVAL_FOLDER_NAMES = (*VAL_FOLDER_NAMES, "test")

Sample = tuple[Path, int]

logger = logging.getLogger("vggnet")


@dataclass
class DatasetSplits:
    """Class names and the (path, class index) samples of each split."""

    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    layout: str

    def counts(self) -> dict[str, list[int]]:
        """Images per class for each split: {"train": [n0, n1, ...], "val": [...]}."""
        result = {}
        for split, samples in (("train", self.train), ("val", self.val)):
            per_class = [0] * len(self.classes)
            for _, label in samples:
                per_class[label] += 1
            result[split] = per_class
        return result

    def describe(self) -> str:
        """A short table: class, train count, val count, and the totals."""
        counts = self.counts()
        width = max(len("class"), *(len(c) for c in self.classes))
        lines = [f"{'class':<{width}}  {'train':>7}  {'val':>7}"]
        for index, name in enumerate(self.classes):
            lines.append(f"{name:<{width}}  {counts['train'][index]:>7}  {counts['val'][index]:>7}")
        lines.append(f"{'total':<{width}}  {len(self.train):>7}  {len(self.val):>7}")
        return "\n".join(lines)


def discover_splits(root: str | Path, val_split: float = 0.2, seed: int = 0) -> DatasetSplits:
    """Find classes and images under `root` and return the train and validation samples.

    Args:
        root: A folder with `train/` and `val/` (or `valid/`, `validation/`) sub-folders of classes, or with class
            sub-folders directly.
        val_split: For the second layout, the fraction of each class's images held out for validation.
        seed: For the second layout, seeds the per-class split.

    Raises:
        ValueError: the folder is missing or its layout cannot be used, with what to change.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"dataset folder {str(root)!r} does not exist; pass --data DIR with class sub-folders")
    train_dir = root / "train"
    val_dir = next((root / name for name in VAL_FOLDER_NAMES if (root / name).is_dir()), None)
    if train_dir.is_dir():
        if val_dir is None:
            raise ValueError(
                f"{root} has train/ but no val/ (or valid/, validation/) folder; add one with the same class "
                f"sub-folders, or put the class folders directly in {root} to split them with --val-split"
            )
        classes, train = _scan_classes(train_dir)
        val_classes, val = _scan_classes(val_dir)
        if val_classes != classes:
            only_train = sorted(set(classes) - set(val_classes))
            only_val = sorted(set(val_classes) - set(classes))
            raise ValueError(
                f"the class folders of {train_dir} and {val_dir} differ (only in train: {only_train or 'none'}; "
                f"only in {val_dir.name}: {only_val or 'none'}); give both splits the same class folders"
            )
        return DatasetSplits(classes, train, val, layout=f"train/ + {val_dir.name}/")
    classes, samples = _scan_classes(root)
    train, val = hold_out(classes, samples, val_split, seed, "give train/ and val/ folders")
    return DatasetSplits(classes, train, val, layout=f"class folders, {val_split:.0%} held out per class")


def hold_out(
    classes: list[str], samples: list[Sample], val_split: float, seed: int, instead: str
) -> tuple[list[Sample], list[Sample]]:
    """(train, val): `val_split` of each class's samples held out for validation, seeded (`_split_per_class`).

    Raises:
        ValueError: `val_split` is not in (0, 1), or a class has a single sample, so none can be held out; the
            message offers `instead`, the other way to give a validation set.
    """
    if not 0.0 < val_split < 1.0:
        raise ValueError(
            f"--val-split must be in (0, 1) to hold images out of data without a val split, got {val_split}; e.g. 0.2"
        )
    train, val = _split_per_class(samples, len(classes), val_split, seed)
    held_out = {label for _, label in val}
    empty_val = [name for label, name in enumerate(classes) if label not in held_out]
    if empty_val:
        raise ValueError(
            f"classes {empty_val} have a single image, so none can be held out for validation; add images "
            f"to them, or {instead}"
        )
    return train, val


def evaluation_samples(root: str | Path, classes: list[str], aliases: dict[str, str] | None = None) -> list[Sample]:
    """The labelled images to evaluate a model with `classes` on: the class folders in `root/val/` (or
    `valid/`, `validation/`, `test/`) when present, else in `root`.

    Each folder is named after one of the model's classes, or after a key of `aliases` (another name for a class:
    ImageNet's WordNet ids). They may be a subset of the model's classes (ImageNet's 10-class Imagenette, say); the
    model still chooses among all of its classes, and the classes without a folder are logged.

    Raises:
        ValueError: the folder is missing, or a class folder is not one of the model's classes.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"--data {str(root)!r} does not exist; pass a folder of class sub-folders")
    folder = next((root / name for name in EVAL_FOLDER_NAMES if (root / name).is_dir()), root)
    found, samples = _scan_classes(folder, needed=1)  # one class of a trained model is a fair test of it
    where, fix = f"the class folders of {folder}", "name the folders after"
    return to_model_classes(samples, found, classes, aliases, where=where, fix=fix, absent="folder")


def to_model_classes(
    samples: list[Sample],
    found: list[str],
    classes: list[str],
    aliases: dict[str, str] | None,
    *,
    where: str,
    fix: str,
    absent: str,
) -> list[Sample]:
    """`samples` labelled by index into `found` (the data's class names), relabelled by index into `classes` (the
    model's). A name may be a key of `aliases` (see `evaluation_samples`); the model's classes absent from the data
    are logged.

    Args:
        where, fix, absent: For the messages, what holds the names, how to fix them, and what a class of the model's
            has none of in the data: "the class folders of DIR", "name the folders after", "folder".

    Raises:
        ValueError: a name is not one of the model's classes.
    """
    aliases = aliases or {}
    names = [name if name in classes else aliases.get(name, name) for name in found]
    unknown = [given for given, name in zip(found, names, strict=True) if name not in classes]
    missing = sorted(set(classes) - set(names))
    if unknown:
        listing = ", ".join(classes[:20]) + (" ..." if len(classes) > 20 else "")
        also = " (or their WordNet ids, e.g. n01440764)" if aliases else ""
        raise ValueError(
            f"{where} differ from the model's classes (missing: {missing or 'none'}; not the model's: {unknown}); "
            f"{fix} the model's classes{also}: {listing}"
        )
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        logger.warning(
            "evaluating on %d of the model's %d classes (no %s for: %s)", len(set(names)), len(classes), absent, shown
        )
    index = {name: i for i, name in enumerate(classes)}
    return [(path, index[names[label]]) for path, label in samples]


def _scan_classes(folder: Path, needed: int = 2) -> tuple[list[str], list[Sample]]:
    """The class folders of `folder` (at least `needed`: two to train a classifier) and their images."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < needed:
        reason = "a classifier needs two or more" if needed > 1 else "there is nothing to evaluate"
        raise ValueError(
            f"{folder} has {len(classes)} class folder(s) ({classes or 'none'}); {reason}: "
            f"put each class's images in its own sub-folder, e.g. {folder}/cat/ and {folder}/dog/"
        )
    samples = []
    for label, name in enumerate(classes):
        images = list_images(folder / name)
        if not images:
            raise ValueError(
                f"class folder {folder / name} has no images ({', '.join(IMAGE_EXTENSIONS)}); add some or remove it"
            )
        samples.extend((path, label) for path in images)
    return classes, samples


def list_images(folder: Path) -> list[Path]:
    """Image files below `folder` (recursively, sorted, any case of extension), skipping hidden files and
    folders such as .DS_Store and ._* ."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.is_file()
    )


def _split_per_class(samples: list[Sample], num_classes: int, val_split: float, seed: int):
    """(train, val), each sorted: `val_split` of each class's images, drawn by one generator seeded with `seed`
    that shuffles the classes in turn (their images in `samples`' order), so that the same folder and seed give
    the same split."""
    by_class = [[] for _ in range(num_classes)]
    for sample in samples:  # one pass over the images, however many classes
        by_class[sample[1]].append(sample)
    rng = random.Random(seed)
    train, val = [], []
    for members in by_class:
        rng.shuffle(members)
        # At least one image of each class on each side, where the class has two.
        held_out = min(len(members) - 1, max(1, round(len(members) * val_split)))
        val.extend(members[:held_out])
        train.extend(members[held_out:])
    # In paths' order, compared by their parts: Path's own comparisons take half a minute on ImageNet's 1.28M.
    return sorted(train, key=_path_order), sorted(val, key=_path_order)


def _path_order(sample: Sample) -> tuple[tuple[str, ...], int]:
    return sample[0].parts, sample[1]
