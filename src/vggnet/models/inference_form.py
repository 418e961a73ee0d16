"""The form a VGG takes for inference, shared by `vggnet eval` and the training loop's validation, so that the
top-1 that `best.pt` records is the one that `vggnet eval` measures on the same images.

A copy of the model in eval mode, channels_last, with each BatchNorm folded into its convolution and the weights
cast once to the precision (fp32, bf16 or fp16; autocast would re-cast them on every call). On the CPU, where
oneDNN runs the precision, each convolution and linear layer also applies the ReLU after it in the same kernel
(oneDNN's post-op, the call inductor's frozen graphs make), and each fp32 convolution keeps its weights in oneDNN's
blocked layout for the last input shape it saw instead of reordering them on every call: vgg16 at 224 runs 1.05-1.27x
faster than the plain module (BENCHMARKS.md). fp32 convolutions with 256 or more input channels on maps up to 56x56
run by Winograd's F(2x2, 3x3) (`winograd.py`): 1.06-1.28x more on vgg16 at 224; bf16 ones too on CPUs with
AVX512-BF16 and no AMX (vgg16 at 224 1.12-1.20x on an AVX-512 EPYC). The max pools take two elementwise maxima
(`MaxPool2x2`): 1.3-6x faster than PyTorch's pooling kernel on vgg16's first two. For torch.compile the ReLUs are
left to inductor, and the convolutions Winograd takes run as the `vggnet::winograd_conv` operator (`WinogradConv`),
which the compiled graph calls as it is. The outputs are the plain module's up to float rounding.

Inputs go in as `inference_input` makes them, in batches of `vggnet.choices.INFERENCE_BATCH_SIZE`.
"""

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .vgg import VGG
from .winograd import (
    WINOGRAD_MIN_CHANNELS,
    winograd_conv,
    winograd_conv_op,
    winograd_dtype_pays,
    winograd_pays,
    winograd_shape_pays,
    winograd_weights,
)


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


class _ConvOf(nn.Conv2d):
    """A convolution that runs another way with `conv`'s parameters (shared, not copied): its state-dict keys are
    the convolution's."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, conv.bias is not None, device="meta")  # fmt: skip
        self.weight, self.bias = conv.weight, conv.bias


class ConvReLU(_ConvOf):
    """A 3x3 convolution that applies the ReLU after it in the same kernel (CPU only). fp32 weights are reordered
    into oneDNN's layout once per input shape; inputs where `winograd_pays` (many channels, a map up to 56x56) run by
    `winograd_conv`, with the weights transformed on the first such input and kept."""

    def __init__(self, conv: nn.Conv2d, relu: bool) -> None:
        super().__init__(conv)
        self.attr = "relu" if relu else "none"
        self._packed: tuple[tuple[int, ...], torch.Tensor] | None = None  # (input shape, weights in oneDNN's layout)
        self._winograd: torch.Tensor | None = None  # the weights as `winograd_weights` transforms them

    def _weight_for(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.detach()
        if weight.dtype != torch.float32:  # oneDNN packs low-precision weights only on CPUs that convert natively
            return weight
        shape, packed = tuple(x.shape), self._packed  # one read: another thread may replace it meanwhile
        if packed is None or packed[0] != shape:
            weights = torch.ops.mkldnn._reorder_convolution_weight(
                weight, self.padding, self.stride, self.dilation, self.groups, list(shape)
            )
            packed = self._packed = (shape, weights)
        return packed[1]

    def _winograd_weights(self) -> torch.Tensor:
        if self._winograd is None:  # two threads may both transform them: the same values
            self._winograd = winograd_weights(self.weight)
        return self._winograd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.detach()
        if winograd_pays(self.in_channels, x):
            return winograd_conv(x, self._winograd_weights(), bias, relu=self.attr == "relu")
        return torch.ops.mkldnn._convolution_pointwise(
            x, self._weight_for(x), bias, self.padding, self.stride, self.dilation, self.groups, self.attr, [], ""
        )


class WinogradConv(_ConvOf):
    """A 3x3 convolution for torch.compile's graphs (CPU only): on inputs where `winograd_shape_pays` it runs by
    `winograd_conv`, called as the `vggnet::winograd_conv` operator, with the weights transformed once here; elsewhere
    it is the plain convolution, which inductor compiles. Made only where `winograd_dtype_pays` for its weights."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv)
        self.register_buffer("winograd_weights", winograd_weights(conv.weight), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if winograd_shape_pays(self.in_channels, x):
            bias = None if self.bias is None else self.bias.detach()
            return winograd_conv_op(x, self.winograd_weights, bias, False)
        return super().forward(x)


class LinearReLU(nn.Linear):
    """A linear layer that applies the ReLU after it (or nothing) in oneDNN's kernel (CPU only)."""

    def __init__(self, linear: nn.Linear, relu: bool) -> None:
        super().__init__(linear.in_features, linear.out_features, linear.bias is not None, device="meta")
        self.weight, self.bias = linear.weight, linear.bias
        self.attr = "relu" if relu else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.detach()
        return torch.ops.mkldnn._linear_pointwise(x, self.weight.detach(), bias, self.attr, [], "")


class MaxPool2x2(nn.MaxPool2d):
    """VGG's 2x2 max pool (stride 2) as two elementwise maxima over strided views of a channels_last input: rows,
    then columns, each reading memory in order. vgg16's first two pools at batch 8 in bf16 on a 2-core AVX-512 CPU:
    19.3 and 7.8 ms by PyTorch's pooling kernel, 3.3 and 1.8 ms by this, where freed memory goes back to the system
    (the Python API's default); 4.2 and 2.1 ms against 3.3 and 1.8 where it is kept (`vggnet.allocator`, the
    commands' setting). The outputs are the same, NaNs included. Other inputs (odd sides, another layout) go to
    `nn.MaxPool2d`."""

    def __init__(self) -> None:
        super().__init__(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % 2 or width % 2 or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        rows = x.permute(0, 2, 3, 1).unflatten(1, (height // 2, 2))  # (n, height/2, 2, width, channels)
        rows = torch.maximum(rows[:, :, 0], rows[:, :, 1])
        columns = rows.unflatten(2, (width // 2, 2))  # (n, height/2, width/2, 2, channels)
        return torch.maximum(columns[:, :, :, 0], columns[:, :, :, 1]).permute(0, 3, 1, 2)


def onednn_runs(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether oneDNN's fused kernels run `dtype` on `device`: fp32 on any x86 CPU, bf16 and fp16 only where the
    CPU converts them natively (AVX-512 or AVX-NE-CONVERT; on plain AVX2 the kernels refuse)."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    supported = {
        torch.float32: lambda: True,
        torch.bfloat16: torch.ops.mkldnn._is_mkldnn_bf16_supported,
        torch.float16: torch.ops.mkldnn._is_mkldnn_fp16_supported,
    }
    return dtype in supported and supported[dtype]()


def fuse_relu(model: VGG) -> VGG:
    """Replace each convolution and linear layer with one that applies the ReLU after it in the same kernel, and
    that ReLU with an Identity (in place; after `fold_batchnorm`, so that nothing stands between them). Layer
    names and indices stay."""
    for sequence, kind, fused in ((model.features, nn.Conv2d, ConvReLU), (model.classifier, nn.Linear, LinearReLU)):
        for index, module in enumerate(sequence):
            if type(module) is not kind:
                continue
            after = next((i for i in range(index + 1, len(sequence)) if not isinstance(sequence[i], nn.Identity)), None)
            relu = after is not None and isinstance(sequence[after], nn.ReLU)
            sequence[index] = fused(module, relu)
            if relu:
                sequence[after] = nn.Identity()
    return model


def pool_by_maxima(model: VGG) -> VGG:
    """Replace each 2x2 max pool of stride 2 with a `MaxPool2x2` (in place; layer names and indices stay)."""
    features = model.features
    for index, module in enumerate(features):
        if type(module) is nn.MaxPool2d and _is_2x2(module):
            features[index] = MaxPool2x2()
    return model


def _is_2x2(pool: nn.MaxPool2d) -> bool:
    plain = pool.padding in (0, (0, 0)) and pool.dilation in (1, (1, 1)) and not pool.ceil_mode
    return plain and not pool.return_indices and pool.kernel_size in (2, (2, 2)) and pool.stride in (2, (2, 2))


def use_winograd_op(model: VGG) -> VGG:
    """Replace each convolution that may run by Winograd (`winograd.WINOGRAD_MIN_CHANNELS` or more input channels,
    weights whose dtype it pays in) with a `WinogradConv` (in place; for torch.compile, where `fuse_relu`'s modules
    are not used). Layer names and indices stay."""
    features = model.features
    for index, module in enumerate(features):
        many_channels = type(module) is nn.Conv2d and module.in_channels >= WINOGRAD_MIN_CHANNELS
        if many_channels and winograd_dtype_pays(module.weight.dtype):
            features[index] = WinogradConv(module)
    return model


def _sharing_copy(model: VGG) -> VGG:
    """A copy of `model` whose parameters and buffers are new tensors over `model`'s memory: converting the copy
    then makes new tensors without copying vgg16's 528 MB of float32 weights first."""
    memo = {}
    for tensor in (*model.parameters(), *model.buffers()):
        detached = tensor.detach()
        memo[id(tensor)] = (
            nn.Parameter(detached, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else detached
        )
    return copy.deepcopy(model, memo)


def _unshare(form: VGG, model: VGG) -> None:
    """Give each tensor of `form` that still shares `model`'s memory (one the conversion left as it was) its own
    copy, so that `form` does not change when `model` is trained on."""
    shared = {tensor.untyped_storage().data_ptr() for tensor in (*model.parameters(), *model.buffers())}
    for tensor in (*form.parameters(), *form.buffers()):
        if tensor.untyped_storage().data_ptr() in shared:
            tensor.data = tensor.data.clone()


def inference_form(model: VGG, dtype: torch.dtype, device: torch.device, fold: bool = True, fuse: bool = True) -> VGG:
    """A copy of `model` for inference in `dtype` on `device`; `model` itself is left as it is.

    Args:
        model: The model (in any mode, on any device).
        dtype: The weights' dtype.
        device: Where the copy runs.
        fold: Fold BatchNorm into the convolutions, and (with `fuse`) each ReLU into the layer before it (off when
            intermediate layers are read, as in `embed`, where `conv*` should stay the convolution's own output).
        fuse: Fuse the ReLUs and pool by `MaxPool2x2` where oneDNN runs `dtype` on `device`. Off under
            torch.compile, whose frozen graph fuses them itself; there the convolutions Winograd may take become
            `WinogradConv`s instead.

    Returns:
        The copy in eval mode, on `device`, channels_last.
    """
    form = _sharing_copy(model).eval()
    if fold:
        fold_batchnorm(form)  # in float32, before the cast: one rounding of the folded weights, not two
    form = form.to(device=device, dtype=dtype, memory_format=torch.channels_last)
    _unshare(form, model)
    if fold and onednn_runs(device, dtype):
        if fuse:
            pool_by_maxima(fuse_relu(form))
        else:
            use_winograd_op(form)
    return form


def inference_input(images: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A batch of preprocessed float32 images as the inference form takes it: on `device`, in `dtype`,
    channels_last."""
    return images.to(device, dtype=dtype, memory_format=torch.channels_last, non_blocking=True)
