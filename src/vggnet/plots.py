"""Pictures of runs and evaluations: loss and accuracy curves (`results.png`) and confusion matrices."""

import textwrap
from pathlib import Path

import torch


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported on first use (it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_results(rows: list[dict], path: Path) -> None:
    """Loss (train, val) and accuracy (train top-1, val top-1, val top-5) against the epoch, with the best epoch
    (highest val top-1, the one `best.pt` holds) marked on both panels."""
    plt = pyplot()
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    epochs = [row["epoch"] for row in rows]
    best = max(rows, key=lambda row: row["val_top1"])  # the first of equals, as the training loop keeps it
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4.2))
    # Fixed margins, which fit every label this figure can have (short tick labels, two legend rows): a layout
    # engine would measure every text at each save, half of the time the figure takes, every epoch of a run.
    figure.subplots_adjust(left=0.09, right=0.98, bottom=0.25, top=0.93, wspace=0.17)
    loss_axis.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    loss_axis.plot(epochs, [r["val_loss"] for r in rows], "o-", label="val")
    loss_axis.set(title="loss", xlabel="epoch", ylabel="cross-entropy (log scale)", yscale="log")
    # Plain numbers (0.3, not 3 x 10^-1); the minor ticks are labelled only when no decade mark may be in view.
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    losses = [r[key] for r in rows for key in ("train_loss", "val_loss") if r[key] > 0]
    loss_axis.yaxis.set_major_formatter(plain)
    loss_axis.yaxis.set_minor_formatter(plain if losses and max(losses) < 10 * min(losses) else NullFormatter())
    accuracy_axis.plot(epochs, [r["train_top1"] for r in rows], "o-", label="train top-1")
    accuracy_axis.plot(epochs, [r["val_top1"] for r in rows], "o-", label="val top-1")
    accuracy_axis.plot(epochs, [r["val_top5"] for r in rows], "--", label="val top-5")
    accuracy_axis.plot(
        best["epoch"], best["val_top1"], "*", color="black", markersize=14, zorder=3,
        label=f"best: epoch {best['epoch']}, val top-1 {best['val_top1']:.4f}",
    )  # fmt: skip
    accuracy_axis.set(title="accuracy", xlabel="epoch", ylabel="fraction correct", ylim=(0, 1.02))
    for axis in (loss_axis, accuracy_axis):
        axis.axvline(best["epoch"], color="black", linestyle=":", linewidth=1)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axis.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        axis.grid(alpha=0.3)
        # Below the axes, so that no curve is ever hidden behind it.
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False, fontsize=9)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion_matrix(
    matrix: torch.Tensor,
    classes: list[str],
    path: Path,
    title: str = "",
    *,
    columns: list[str] | None = None,
    note: str = "",
) -> None:
    """Rows are true classes, columns predictions, colour the fraction of each true class (its row); counts
    written in the cells when there are at most 30 rows and columns.

    Args:
        matrix: Counts, (len(classes), len(columns)).
        classes: The rows' names (the true classes).
        columns: The columns' names (default: `classes`), e.g. the evaluated classes and an "other" column.
        note: A line at the foot of the picture, e.g. what the "other" column holds.
    """
    plt = pyplot()
    columns = classes if columns is None else columns
    counts = matrix.to(torch.float64)
    fractions = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    # About half an inch a cell, within bounds that keep the title readable and the file small.
    width = min(max(5.5, 3 + 0.45 * len(columns)), 30)
    height = min(max(3.5, 2.5 + 0.45 * len(classes)), 30)
    figure, axis = plt.subplots(figsize=(width, height), layout="constrained")
    image = axis.imshow(fractions.numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    figure.colorbar(image, ax=axis, pad=0.02, label="fraction of the true class")
    if max(len(classes), len(columns)) <= 30:
        long_names = max(len(name) for name in columns) > 3
        axis.set_xticks(range(len(columns)), columns, rotation=90 if long_names else 0)
        axis.set_yticks(range(len(classes)), classes)
        for i, j in counts.nonzero().tolist():
            color = "white" if fractions[i, j] > 0.5 else "black"
            axis.text(j, i, str(int(counts[i, j])), ha="center", va="center", color=color, fontsize=8)
    axis.set(xlabel="predicted class", ylabel="true class")
    axis.set_title(title or "confusion matrix", fontsize=10)
    if note:
        figure.supxlabel(textwrap.fill(note, width=int(width * 18)), fontsize=8)
    figure.savefig(path, dpi=100)
    plt.close(figure)
