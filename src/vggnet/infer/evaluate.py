"""Evaluation: top-1, top-5, loss, per-class precision/recall/F1/support and the confusion matrix.

vggnet eval --model runs/train/exp/best.pt --data DIR|TABLE [--format table|json] [--out DIR]
"""

import csv
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..choices import INFERENCE_BATCH_SIZE
from ..data import ImageListDataset, TableColumns, collate_skipping_failures, evaluation_samples_of
from ..data.folders import Sample
from ..metrics import evaluation_metrics, evaluation_sums, per_class_scores
from ..models.vgg import VGG
from ..models.weights import imagenet_categories, imagenet_synsets
from ..outputs import output_folder
from ..plots import plot_confusion_matrix
from ..runtime import loader_workers
from ..tables import render_table
from .batches import check_batch_size
from .runner import InferenceRunner
from .source import LoadedModel, load_for_inference


def evaluate(
    model: str | Path | VGG | LoadedModel,
    data: str | Path,
    *,
    pretrained: str | Path | None = None,
    batch_size: int = INFERENCE_BATCH_SIZE,
    workers: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    compile: bool = False,
    out: str | Path | None = None,
    path_column: str | None = None,
    label_column: str = "label",
    split_column: str | None = None,
    image_root: str | Path | None = None,
) -> dict:
    """Evaluate a model on a labelled image folder or table.

    >>> import os, vggnet
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> for colour in ("tomato", "teal"):  # class folders named after the model's classes, one image each
    ...     Path("colours", colour).mkdir(parents=True)
    ...     Image.new("RGB", (32, 32), colour).save(f"colours/{colour}/0.png")
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)  # random weights
    >>> model.pretrained_cfg = {"classes": ["red", "teal", "tomato"], "preprocess": vggnet.Preprocess(32, 32).to_dict()}
    >>> report = vggnet.evaluate(model, "colours", device="cpu", out="eval")
    >>> report["num_images"], report["evaluated_classes"], report["top5"]  # top-5 of 3 classes: always a hit
    (2, ['teal', 'tomato'], 1.0)
    >>> report["per_class"]["teal"]["support"], [sum(row) for row in report["confusion_matrix"]]
    (1, [0, 1, 1])
    >>> sorted(os.listdir("eval"))
    ['confusion_matrix.csv', 'confusion_matrix.png', 'metrics.json']
    >>> vggnet.evaluate("runs/train/exp/best.pt", "~/flowers")  # doctest: +SKIP
    >>> vggnet.evaluate("vgg16", "~/imagenet/val", pretrained="imagenet")  # doctest: +SKIP

    Args:
        model: A checkpoint path, a registry name with `pretrained`, or a loaded model (see `load_for_inference`).
        data: Class folders, or a folder holding `val/` (or `valid/`, `validation/`, `test/`) class folders, named
            after the model's classes (all or some of them); for the ImageNet classes, also their WordNet ids, as
            in ImageNet's own validation folders.
            One class is enough: top-1 is then the fraction of its images predicted as it.
            Or a CSV or Parquet table of paths and labels (the labels are named as the folders are), or a folder
            of tables (its val, valid, validation or test table): see `vggnet.data.tables`.
        out: Where to write `confusion_matrix.png`, `confusion_matrix.csv` and `metrics.json` (None: nowhere).
            The picture and the CSV have a row and a column per evaluated class, and, when the data holds only some
            of the model's classes, an `(other)` column counting the predictions of the classes left out;
            `metrics.json` holds the report (the matrix over all the model's classes).
        path_column, label_column, split_column, image_root: How to read a table (as `vggnet train`'s settings
            of those names): with `split_column`, its val rows are evaluated.

    Returns:
        `top1`, `top5` (fractions), `loss`, `num_images`, `per_class` ({class: precision, recall, f1, support}),
        `confusion_matrix` (rows true, columns predicted, over all of `classes`, the model's), and
        `evaluated_classes` (those with images, in the model's order).
    """
    check_batch_size(batch_size)
    out = output_folder(out, "--out") if out is not None else None  # before the model loads and the data is read
    loaded = load_for_inference(model, pretrained, device, precision)
    samples = evaluation_set(loaded, data, TableColumns(path_column, label_column, split_column, image_root))
    dataset = ImageListDataset(samples, loaded.preprocess.transform(), loaded.preprocess.decode_size)
    num_workers = loader_workers(workers, len(dataset), batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_skipping_failures)
    runner = InferenceRunner(loaded, compile=compile)
    result = evaluation_metrics(evaluation_sums(runner, len(loaded.classes), loader, loaded.device))
    confusion = result["confusion"]
    report = {
        "model": loaded.source,
        "data": str(data),
        "num_images": int(confusion.sum()),
        "top1": result["top1"],
        "top5": result["top5"],
        "loss": result["loss"],
        "per_class": per_class_scores(confusion, loaded.classes),
        "classes": loaded.classes,
        "evaluated_classes": [loaded.classes[i] for i in sorted({label for _, label in samples})],
        "confusion_matrix": confusion.tolist(),
    }
    if out is not None:
        _write_outputs(report, out)
    return report


def evaluation_set(loaded: LoadedModel, data: str | Path, columns: TableColumns) -> list[Sample]:
    """The labelled images of `data` (as `evaluate` takes it, a table read by `columns`) for `loaded`'s classes,
    labelled by their index; an ImageNet model also takes folders named by WordNet id.

    Raises:
        ValueError: the data is missing or cannot be used, or a label is not one of the model's classes.
    """
    imagenet = loaded.classes == imagenet_categories()
    wordnet_ids = dict(zip(imagenet_synsets(), loaded.classes, strict=True)) if imagenet else None
    return evaluation_samples_of(data, loaded.classes, wordnet_ids, columns)


OTHER = "(other)"  # the column of predictions outside the evaluated classes; brackets keep it apart from a class


def evaluated_confusion(report: dict) -> tuple[list[str], list[str], torch.Tensor]:
    """The confusion matrix restricted to the evaluated classes: (row names, column names, counts). Rows are the
    evaluated classes; so are the columns, plus an `(other)` column (predictions of any class left out) when the
    data holds only some of the model's classes."""
    classes, evaluated = report["classes"], report["evaluated_classes"]
    full = torch.tensor(report["confusion_matrix"])
    rows = full[[classes.index(name) for name in evaluated]]
    kept = rows[:, [classes.index(name) for name in evaluated]]
    if len(evaluated) == len(classes):
        return evaluated, evaluated, kept
    other = rows.sum(dim=1, keepdim=True) - kept.sum(dim=1, keepdim=True)
    return evaluated, [*evaluated, OTHER], torch.cat([kept, other], dim=1)


def _write_outputs(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    rows, columns, counts = evaluated_confusion(report)
    with open(out / "confusion_matrix.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *columns])
        for name, row in zip(rows, counts.tolist(), strict=True):
            writer.writerow([name, *row])
    left_out = [name for name in report["classes"] if name not in rows]
    listing = ", ".join(left_out[:5]) + (" ..." if len(left_out) > 5 else "")
    total = len(report["classes"])
    note = f"{OTHER}: predicted as a class not evaluated here ({len(left_out)} of the model's {total}: {listing})"
    name = Path(report["data"]).expanduser().resolve().name
    plot_confusion_matrix(
        counts,
        rows,
        out / "confusion_matrix.png",
        title=f"{name}: top-1 {report['top1']:.4f} on {report['num_images']} images",
        columns=columns,
        note=note if left_out else "",
    )


def render_report(report: dict, style: str = "table") -> str:
    """The evaluation as JSON, or as a text table of per-class scores with the totals."""
    if style == "json":
        return json.dumps(report, indent=2)
    rows = [
        [name, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}", s["support"]]
        for name, s in report["per_class"].items()
        if s["support"]
    ]
    table = render_table(["class", "precision", "recall", "f1", "support"], rows)
    unlisted = len(report["per_class"]) - len(rows)
    note = f" ({unlisted} of the model's classes had no images and are not listed)" if unlisted else ""
    return (
        f"{table}\n\n{report['num_images']} images: top-1 {report['top1']:.4f}, top-5 {report['top5']:.4f}, "
        f"loss {report['loss']:.4f}{note}"
    )
