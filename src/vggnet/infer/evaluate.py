"""Evaluation: top-1, top-5, loss, per-class precision/recall/F1/support and the confusion matrix.

vggnet eval --model runs/train/exp/best.pt --data DIR [--format table|json] [--out DIR]
"""

import csv
import json
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..choices import INFERENCE_BATCH_SIZE
from ..data import ImageListDataset, build_transform, collate_skipping_failures
from ..data.folders import evaluation_samples
from ..models.vgg import VGG
from ..models.weights import imagenet_categories, imagenet_synsets
from ..plots import plot_confusion_matrix
from ..tables import render_table
from .runner import InferenceRunner
from .source import LoadedModel, load_for_inference


def evaluation_sums(forward, num_classes: int, loader: DataLoader, device: torch.device) -> dict:
    """Summed loss, top-5 hits and the confusion matrix (rows true, columns predicted) over `loader`, which
    yields (images, labels, dropped) batches; `forward` maps a batch to logits. Sums, so that processes can add
    theirs up."""
    classes = num_classes
    confusion = torch.zeros(classes, classes, dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top5_hits = torch.zeros((), dtype=torch.long, device=device)
    with torch.no_grad():
        for images, labels, _dropped in loader:
            if not len(labels):
                continue
            labels = labels.to(device, non_blocking=True)
            logits = forward(images).float()
            loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").double()
            top = logits.topk(min(5, classes), dim=1).indices
            top5_hits += (top == labels[:, None]).any(dim=1).sum()
            confusion += torch.bincount(labels * classes + top[:, 0], minlength=classes * classes).view(classes, -1)
    return {"loss_sum": loss_sum, "top5_hits": top5_hits, "confusion": confusion}


def evaluation_metrics(sums: dict) -> dict:
    """Loss, top-1 and top-5 (fractions) and the confusion matrix (on the CPU) from `evaluation_sums`."""
    confusion = sums["confusion"].cpu()
    seen = max(int(confusion.sum()), 1)
    return {
        "loss": float(sums["loss_sum"]) / seen,
        "top1": int(confusion.diag().sum()) / seen,
        "top5": int(sums["top5_hits"]) / seen,
        "confusion": confusion,
    }


def evaluate(
    model: str | Path | VGG | LoadedModel,
    data: str | Path,
    *,
    pretrained: str | Path | None = None,
    batch_size: int = INFERENCE_BATCH_SIZE,
    workers: int = 0,
    device: str = "auto",
    precision: str = "auto",
    compile: bool = False,
    out: str | Path | None = None,
) -> dict:
    """Evaluate a model on a labelled image folder.

    Args:
        model: A checkpoint path, or a registry name with `pretrained`.
        data: Class folders, or a folder holding `val/` (or `valid/`, `validation/`, `test/`) class folders, named
            after the model's classes (all or some of them); for the ImageNet classes, also their WordNet ids, as
            in ImageNet's own validation folders.
            One class is enough: top-1 is then the fraction of its images predicted as it.
        out: Where to write `confusion_matrix.png`, `confusion_matrix.csv` and `metrics.json` (None: nowhere).
            The picture and the CSV have a row and a column per evaluated class, and, when the data holds only some
            of the model's classes, an `(other)` column counting the predictions of the classes left out;
            `metrics.json` holds the report (the matrix over all the model's classes).

    Returns:
        `top1`, `top5` (fractions), `loss`, `num_images`, `per_class` ({class: precision, recall, f1, support}),
        `confusion_matrix` (rows true, columns predicted, over all of `classes`, the model's), and
        `evaluated_classes` (those with images, in the model's order).
    """
    loaded = model if isinstance(model, LoadedModel) else load_for_inference(model, pretrained, device, precision)
    imagenet = loaded.classes == imagenet_categories()
    wordnet_ids = dict(zip(imagenet_synsets(), loaded.classes, strict=True)) if imagenet else None
    samples = evaluation_samples(data, loaded.classes, wordnet_ids)
    dataset = ImageListDataset(samples, build_transform(loaded.preprocess))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_skipping_failures)
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
        "per_class": _per_class(confusion, loaded.classes),
        "classes": loaded.classes,
        "evaluated_classes": [loaded.classes[i] for i in sorted({label for _, label in samples})],
        "confusion_matrix": confusion.tolist(),
    }
    if out is not None:
        _write_outputs(report, Path(out))
    return report


def _per_class(confusion: torch.Tensor, classes: list[str]) -> dict:
    """torchmetrics' per-class precision, recall and F1, from the (true, predicted) pairs of the matrix."""
    # Imported here: torchmetrics brings scipy.signal, seconds that training and the other verbs need not pay.
    from torchmetrics.functional.classification import multiclass_f1_score, multiclass_precision, multiclass_recall

    num_classes = len(classes)
    pairs = confusion.nonzero()
    counts = confusion[pairs[:, 0], pairs[:, 1]]
    target = pairs[:, 0].repeat_interleave(counts)
    preds = pairs[:, 1].repeat_interleave(counts)
    scores = {
        name: metric(preds, target, num_classes=num_classes, average=None, zero_division=0).tolist()
        for name, metric in (
            ("precision", multiclass_precision),
            ("recall", multiclass_recall),
            ("f1", multiclass_f1_score),
        )
    }
    support = confusion.sum(dim=1).tolist()
    return {
        name: {
            "precision": scores["precision"][i],
            "recall": scores["recall"][i],
            "f1": scores["f1"][i],
            "support": support[i],
        }
        for i, name in enumerate(classes)
    }


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
