"""The shared metrics (`vggnet.metrics`) against independent references: scikit-learn, torchmetrics and small
cases worked out by hand."""

import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)
from torchmetrics.functional.classification import multiclass_f1_score, multiclass_precision, multiclass_recall

from vggnet.metrics import evaluation_metrics, evaluation_sums, per_class_scores


def _random_confusion(num_classes: int, seed: int) -> torch.Tensor:
    """Counts with empty rows (classes without images) and empty columns (classes never predicted)."""
    generator = torch.Generator().manual_seed(seed)
    confusion = torch.randint(0, 6, (num_classes, num_classes), generator=generator)
    confusion[0] = 0
    confusion[:, num_classes - 1] = 0
    return confusion


def _pairs(confusion: torch.Tensor) -> tuple[list[int], list[int]]:
    """One (true, predicted) pair per counted image."""
    true, predicted = [], []
    for (row, column), count in zip(confusion.nonzero().tolist(), confusion[confusion > 0].tolist(), strict=True):
        true += [row] * count
        predicted += [column] * count
    return true, predicted


def test_per_class_scores_worked_by_hand():
    # cat: 3 of 4 found, never wrongly predicted; dog: 2 of 2 found, one cat taken for a dog; emu: no images.
    confusion = torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    scores = per_class_scores(confusion, ["cat", "dog", "emu"])
    assert scores["cat"] == pytest.approx({"precision": 1.0, "recall": 0.75, "f1": 6 / 7, "support": 4})
    assert scores["dog"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert scores["emu"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


@pytest.mark.parametrize("num_classes, seed", [(2, 0), (5, 1), (12, 2)])
def test_per_class_scores_match_scikit_learn(num_classes, seed):
    confusion = _random_confusion(num_classes, seed)
    true, predicted = _pairs(confusion)
    labels = list(range(num_classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        true, predicted, labels=labels, average=None, zero_division=0
    )
    scores = per_class_scores(confusion, [f"class{i}" for i in labels])
    for i, s in enumerate(scores.values()):
        assert s["precision"] == pytest.approx(precision[i], rel=1e-6)
        assert s["recall"] == pytest.approx(recall[i], rel=1e-6)
        assert s["f1"] == pytest.approx(f1[i], rel=1e-6)
        assert s["support"] == support[i]


def test_per_class_scores_equal_torchmetrics_to_the_bit():
    """The values `vggnet eval` reported when it computed them with torchmetrics, image by image."""
    confusion = _random_confusion(9, 3)
    true, predicted = _pairs(confusion)
    target, preds = torch.tensor(true), torch.tensor(predicted)
    options = {"num_classes": 9, "average": None, "zero_division": 0}
    scores = per_class_scores(confusion, [str(i) for i in range(9)]).values()
    metrics = {"precision": multiclass_precision, "recall": multiclass_recall, "f1": multiclass_f1_score}
    for key, metric in metrics.items():
        assert [s[key] for s in scores] == metric(preds, target, **options).tolist(), key


@pytest.mark.parametrize("num_classes", [3, 7])
def test_evaluation_sums_and_metrics_match_scikit_learn(num_classes):
    generator = torch.Generator().manual_seed(num_classes)
    logits = torch.randn(50, num_classes, generator=generator) * 3
    labels = torch.randint(0, num_classes, (50,), generator=generator)
    # Batches of 16 with an empty one (every image of it unreadable), as the loaders yield them.
    batches = [(logits[i : i + 16], labels[i : i + 16], []) for i in range(0, 50, 16)]
    batches.insert(1, (torch.empty(0, num_classes), torch.empty(0, dtype=torch.long), ["bad.jpg"]))
    metrics = evaluation_metrics(evaluation_sums(lambda x: x, num_classes, batches, torch.device("cpu")))

    true, scores = labels.numpy(), logits.numpy()
    all_labels = list(range(num_classes))
    assert metrics["confusion"].tolist() == confusion_matrix(true, scores.argmax(1), labels=all_labels).tolist()
    assert metrics["top1"] == accuracy_score(true, scores.argmax(1))
    expected_top5 = 1.0 if num_classes <= 5 else top_k_accuracy_score(true, scores, k=5, labels=all_labels)
    assert metrics["top5"] == expected_top5
    probabilities = torch.softmax(logits.double(), dim=1).numpy()
    assert metrics["loss"] == pytest.approx(log_loss(true, probabilities, labels=all_labels), rel=1e-6)


def test_metrics_of_nothing_are_zero():
    sums = evaluation_sums(lambda x: x, 4, [], torch.device("cpu"))
    metrics = evaluation_metrics(sums)
    assert (metrics["loss"], metrics["top1"], metrics["top5"]) == (0.0, 0.0, 0.0)
    assert metrics["confusion"].tolist() == [[0] * 4] * 4
