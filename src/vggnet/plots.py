"""Pictures of runs and evaluations: loss and accuracy curves (`results.png`) and confusion matrices."""

from pathlib import Path

import torch


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported on first use (it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_results(rows: list[dict], path: Path) -> None:
    """Loss (train, val) and top-1 accuracy (train, val) against the epoch."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in rows]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    loss_axis.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    loss_axis.plot(epochs, [r["val_loss"] for r in rows], "o-", label="val")
    loss_axis.set(title="loss", xlabel="epoch", yscale="log")
    accuracy_axis.plot(epochs, [r["train_top1"] for r in rows], "o-", label="train top-1")
    accuracy_axis.plot(epochs, [r["val_top1"] for r in rows], "o-", label="val top-1")
    accuracy_axis.plot(epochs, [r["val_top5"] for r in rows], "--", label="val top-5")
    accuracy_axis.set(title="accuracy", xlabel="epoch", ylim=(0, 1.01))
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion_matrix(matrix: torch.Tensor, classes: list[str], path: Path, title: str = "") -> None:
    """Rows are true classes, columns predictions, colour the fraction of each true class; counts written in
    the cells when there are at most 30 classes."""
    plt = _pyplot()
    counts = matrix.to(torch.float64)
    fractions = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    size = min(4 + 0.35 * len(classes), 30)
    figure, axis = plt.subplots(figsize=(size, size), constrained_layout=True)
    image = axis.imshow(fractions.numpy(), cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="fraction of true class")
    if len(classes) <= 30:
        ticks = range(len(classes))
        axis.set_xticks(ticks, classes, rotation=90)
        axis.set_yticks(ticks, classes)
        for i in ticks:
            for j in ticks:
                value = int(counts[i, j])
                if value:
                    color = "white" if fractions[i, j] > 0.5 else "black"
                    axis.text(j, i, str(value), ha="center", va="center", color=color, fontsize=8)
    axis.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    figure.savefig(path, dpi=100)
    plt.close(figure)
