"""The form a VGG takes for inference, shared by `vggnet eval` and the training loop's validation, so that the
top-1 that `best.pt` records is the one that `vggnet eval` measures on the same images.

- fp32: the model itself in eval mode, channels_last.
- bf16 / fp16: a copy with each BatchNorm folded into its convolution and the weights cast once to the low
  precision (autocast would re-cast them on every call), channels_last.

Inputs go in as `inference_input` makes them, in batches of `vggnet.choices.INFERENCE_BATCH_SIZE`.
"""

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .vgg import VGG


def fold_batchnorm(model: VGG) -> VGG:
    """Fold each BatchNorm into the convolution before it (in place; eval-mode statistics), leaving an Identity
    in its place so that layer names and indices stay. The outputs are unchanged up to rounding."""
    features = model.features
    for index in range(len(features) - 1):
        conv, norm = features[index], features[index + 1]
        # SyncBatchNorm: what a --sync-bn run under torchrun validates with.
        if isinstance(conv, nn.Conv2d) and isinstance(norm, (nn.BatchNorm2d, nn.SyncBatchNorm)):
            features[index] = fuse_conv_bn_eval(conv.eval(), norm.eval())
            features[index + 1] = nn.Identity()
    return model


def low_precision_copy(model: VGG, dtype: torch.dtype, device: torch.device, fold: bool = True) -> VGG:
    """A copy of `model` for inference in `dtype` (bf16 or fp16); `model` itself is left as it is.

    Args:
        model: The model (in any mode, on any device).
        dtype: The weights' dtype.
        device: Where the copy runs.
        fold: Fold BatchNorm into the convolutions (off when intermediate layers are read, as in `embed`, where
            `conv*` should stay the convolution's own output).

    Returns:
        The copy in eval mode, on `device`, channels_last.
    """
    form = copy.deepcopy(model).eval()
    if fold:
        fold_batchnorm(form)  # in float32, before the cast: one rounding of the folded weights, not two
    return form.to(device=device, dtype=dtype, memory_format=torch.channels_last)


def inference_input(images: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A batch of preprocessed float32 images as the inference form takes it: on `device`, in `dtype`,
    channels_last."""
    return images.to(device, dtype=dtype, memory_format=torch.channels_last, non_blocking=True)
