"""Classification metrics, shared by training's validation and `vggnet eval`: the summed loss, top-5 hits and
confusion matrix of a pass over labelled batches, and what follows from them (loss, top-1, top-5, per-class
precision, recall and F1).

The pass returns sums, so that processes under torchrun add theirs up before the metrics are read.
"""

import torch
from torch import nn

TOP_K = 5  # the second accuracy reported beside top-1


def evaluation_sums(forward, num_classes: int, loader, device: torch.device) -> dict:
    """Summed loss, top-5 hits and the confusion matrix (rows true, columns predicted) over `loader`.

    Args:
        forward: Maps a batch of images to logits.
        num_classes: The number of logits (the matrix is `num_classes` x `num_classes`).
        loader: Yields (images, labels, dropped) batches, as `collate_skipping_failures` makes them.
        device: Where the sums are kept (the logits' device).

    Returns:
        `loss_sum` (float64), `top5_hits` and `confusion` (int64), tensors on `device`.
    """
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
            top = logits.topk(min(TOP_K, classes), dim=1).indices
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


def per_class_scores(confusion: torch.Tensor, classes: list[str]) -> dict:
    """Each class's precision, recall, F1 and support, from a confusion matrix (rows true, columns predicted).

    A score whose denominator is zero (a class never predicted, or without images) is 0. The scores are computed in
    float32, as torchmetrics computes them (the reports written before kept its values).

    Example:
        >>> scores = per_class_scores(torch.tensor([[3, 1], [0, 2]]), ["cat", "dog"])
        >>> scores["cat"]
        {'precision': 1.0, 'recall': 0.75, 'f1': 0.8571428656578064, 'support': 4}
    """
    true_positives = confusion.diag().float()
    predicted = confusion.sum(dim=0).float()
    support = confusion.sum(dim=1)
    actual = support.float()
    precision = _divide(true_positives, predicted)
    recall = _divide(true_positives, actual)
    f1 = _divide(2 * true_positives, predicted + actual)  # 2TP / (2TP + FP + FN)
    columns = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    values = {key: column.tolist() for key, column in columns.items()}
    return {name: {key: values[key][i] for key in columns} for i, name in enumerate(classes)}


def _divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, with 0 where the denominator is 0."""
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), torch.zeros_like(numerator))
