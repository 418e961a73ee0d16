"""One training step and one validation pass: what the epoch loop runs, and what a benchmark or a notebook can call
on its own model, optimizer and batches.

The step reads nothing back from the device: it returns tensors, which a caller reads when it needs them (the loop
once per logging interval), so that the host queues the next steps while the device works.
"""

from typing import NamedTuple

import torch
from torch import nn

from ..metrics import evaluation_metrics, evaluation_sums
from ..models.inference_form import inference_form, inference_input
from ..models.vgg import VGG
from ..runtime import autocast_dtype
from .distributed import Distributed


class StepOutput(NamedTuple):
    """What `train_step` returns: the batch's loss (a 0-dim tensor) and logits, detached, on the device."""

    loss: torch.Tensor
    logits: torch.Tensor


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn=nn.functional.cross_entropy,
    precision: str = "fp32",
    scaler: torch.amp.GradScaler | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> StepOutput:
    """One optimisation step: forward and loss under autocast at `precision`, backward, the optimizer's step (through
    `scaler` when given: fp16 on CUDA), then the schedule's step.

    Args:
        model: The module to train, in train mode (a VGG, or the DDP module wrapping one).
        images: A batch on the model's device (vggnet trains channels_last).
        labels: The batch's class indices, on the same device.
        loss_fn: Maps (logits, labels) to the mean loss.
        precision: `"fp32"`, `"bf16"` or `"fp16"` (resolved: `vggnet.runtime.resolve_precision` turns `"auto"` into
            one of them for a device).

    Returns:
        The loss and logits, still on the device: the step does not wait for the device to finish.

    Example:
        >>> import torch, vggnet
        >>> from vggnet.training import train_step
        >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        >>> images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
        >>> loss, logits = train_step(model, images, labels, optimizer)
        >>> logits.shape, bool(loss.isfinite())
        (torch.Size([4, 3]), True)
    """
    dtype = autocast_dtype(precision)
    with torch.autocast(images.device.type, dtype=dtype, enabled=dtype is not None):
        logits = model(images)
        loss = loss_fn(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    if scheduler is not None:
        scheduler.step()
    return StepOutput(loss.detach(), logits.detach())


def validate(model: VGG, loader, *, precision: str = "fp32", distributed: Distributed | None = None) -> dict:
    """Validate `model` as `vggnet eval` runs it at `precision`: a copy in eval mode with BatchNorm folded, the
    weights cast and, on the CPU, the ReLUs fused (`models.inference_form`; one copy of the weights per call).
    `model` itself is not changed.

    Args:
        model: The bare VGG (not a DDP wrapper), on its device.
        loader: Yields (images, labels, dropped) batches, as vggnet's loaders (`collate_skipping_failures`) do.
        precision: `"fp32"`, `"bf16"` or `"fp16"`.
        distributed: Under torchrun, sums every process's counts, so that each image counts once in all.

    Returns:
        `loss`, `top1`, `top5` (fractions) and `confusion` (rows true, columns predicted, on the CPU), as
        `vggnet.metrics.evaluation_metrics` gives them.

    Example:
        >>> import torch, vggnet
        >>> from vggnet.training import validate
        >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
        >>> batches = [(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]), [])]  # no unreadable images
        >>> metrics = validate(model, batches)
        >>> sorted(metrics), int(metrics["confusion"].sum())
        (['confusion', 'loss', 'top1', 'top5'], 4)
    """
    device = next(model.parameters()).device
    dtype = autocast_dtype(precision) or torch.float32
    form = inference_form(model, dtype, device)

    def forward(images: torch.Tensor) -> torch.Tensor:
        return form(inference_input(images, device, dtype))

    sums = evaluation_sums(forward, model.num_classes, loader, device)
    if distributed is not None:
        for value in sums.values():
            distributed.all_reduce_sum(value)
    return evaluation_metrics(sums)
