"""How a VGG 3x3 convolution (stride 1, padding 1) runs while training on the CPU, where oneDNN's kernels are far
below the machine's speed (2-core AVX2 EPYC, fp32, BENCHMARKS.md) or Winograd's algorithm does fewer
multiplications than they do:

- on a map of at most 2x2 pixels, forward and backward alike: the layer runs as one matrix product of the input's
  nine shifted copies (`conv_as_matmul`);
- channels_last activations in fp32 on AVX2 and AVX-512 CPUs (oneDNN's `jit:avx2` backward-weights kernel reads
  NHWC at 16-57% of the ceiling where its forward and input-gradient kernels reach 90-100%; on an AVX-512 EPYC
  vgg16's step at 224 ran 1.22x faster with these kernels): the layer runs by vggnet's own kernels
  (`conv_with_own_kernels`). The weight gradient is Winograd's F(2x2, 3x3) where
  `winograd.winograd_weight_grad_pays` (64 or more input channels), else a matrix product of the input's nine
  shifted copies, built a block of rows at a time, and the output gradient; the forward and the input gradient
  are Winograd's where `winograd.winograd_pays` (256 or more input channels, maps up to 56x56), else oneDNN's.
  Winograd's weights are transformed at every step, once: the input gradient's are a permutation of them;
- under bf16 autocast, where Winograd pays in bf16 (`winograd.bf16_winograd_pays`: AVX512-BF16 without AMX) on
  maps of at least 14x14: the forward, the input gradient and the weight gradient all by Winograd, in bf16 with
  the weights' gradients summed in fp32 (vgg16's step at 224, batch 8, 1.15x on an AVX-512 EPYC).

Inference, export and int8 never come here: they keep the convolution (`training_conv` is called in training mode
only).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .nhwc import padded_nhwc, row_blocks
from .winograd import (
    turned_winograd_weights,
    winograd_conv,
    winograd_pays,
    winograd_weight_grad,
    winograd_weight_grad_pays,
    winograd_weights,
)

# A convolution on a map of at most this many pixels (2x2) runs as a matrix product, forward and backward.
SMALL_MAP_PIXELS = 4
# Convolutions with fewer input channels (the RGB input layer) keep oneDNN's kernels: as fast there.
MIN_CHANNELS_FOR_OWN_KERNELS = 16
# The nine shifted copies are built this many bytes at a time for each 64 output channels (8 MB for 64, 64 MB for
# 512): a product with more outputs does more work per copied byte and runs faster on longer sums, while a 64-channel
# layer's runs fastest on a block that stays in the last-level cache (vgg16 at 224: 1.08x over 8 MB for every layer,
# measured before Winograd took the weight gradients of 64 or more input channels; these are now the narrower
# layers' and those of maps with an odd side).
WEIGHT_GRAD_BLOCK_BYTES_PER_64_OUTPUTS = 8 << 20
# bf16 (autocast) convolutions run by Winograd on maps of at least this many pixels (14x14), where `winograd_pays`:
# a layer's step (forward, both gradients and transforming the weights again) on an AVX-512 EPYC, 512 channels at
# 14x14 1.06x (batch 8 and 16) to 1.37x (32), at 28x28 and 56x56 1.2-1.6x; on smaller maps the weights outweigh the
# activations, and transforming them and their gradient costs more than it saves (4x4, batch 64: 0.64-0.83x).
BF16_WINOGRAD_MIN_MAP_PIXELS = 14 * 14


def training_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` for a VGG convolution in training mode on the CPU, by the fastest of the three ways above."""
    if x.shape[-2] * x.shape[-1] <= SMALL_MAP_PIXELS:
        return conv_as_matmul(conv, x)
    own_input = _own_kernels_input(conv, x)
    if own_input is not None:
        return conv_with_own_kernels(conv, own_input)
    return conv(x)


def conv_as_matmul(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` for a 3x3 convolution (stride 1, padding 1) computed as one matrix product of the input's nine
    shifted copies and the weights, both in channels_last order (free views of channels_last tensors); the
    output is channels_last. On a 2x2 map, batch 64, 512 channels, a training step of it (forward and backward)
    took 61 ms where oneDNN's convolution took 163 ms (2-core AVX2 CPU, fp32, BENCHMARKS.md; on an AMX Xeon in
    bf16 the matrix product was 2x faster at 2x2 too); from 4x4 up the convolution is as fast or faster."""
    n, channels, height, width = x.shape
    shifted = _nine_shifts(padded_nhwc(x), slice(None), 0, height, width)
    columns = torch.stack(shifted, dim=3).reshape(n * height * width, 9 * channels)
    weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, 9 * channels)
    y = F.linear(columns, weight, conv.bias)
    return y.reshape(n, height, width, conv.out_channels).permute(0, 3, 1, 2)


def conv_with_own_kernels(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` by vggnet's kernels where they pay: the forward and the input gradient by `winograd_conv` where
    `winograd_pays`, else oneDNN's; the weight gradient by `winograd_weight_grad` where
    `winograd_weight_grad_pays`, else `weight_grad_as_matmul`."""
    winograd, winograd_grad = winograd_pays(conv.in_channels, x), winograd_weight_grad_pays(conv.in_channels, x)
    return _ConvWithOwnKernels.apply(x, conv.weight, conv.bias, winograd, winograd_grad)


def weight_grad_as_matmul(x: torch.Tensor, grad_output: torch.Tensor, block_bytes: int | None = None) -> torch.Tensor:
    """The weight gradient of a 3x3 convolution (stride 1, padding 1, no groups) with input `x` (N, C, H, W) and
    output gradient `grad_output` (N, O, H, W): the sum over every output pixel of the input's 3x3 neighbourhood
    times the pixel's gradient, i.e. (nine shifted copies of the input, (pixels, 9C))^T @ (gradient, (pixels, O)).
    The shifted copies are built `block_bytes` at a time (whole images, or rows of one image; by default
    `WEIGHT_GRAD_BLOCK_BYTES_PER_64_OUTPUTS` for each 64 output channels) into one reused buffer and summed into
    the (9C, O) product; returned as (O, C, 3, 3) in channels_last order."""
    n, channels, height, width = x.shape
    out_channels = grad_output.shape[1]
    if block_bytes is None:
        block_bytes = WEIGHT_GRAD_BLOCK_BYTES_PER_64_OUTPUTS * max(1, out_channels // 64)
    padded = padded_nhwc(x)
    grad = grad_output.permute(0, 2, 3, 1)  # (N, H, W, O), free for a channels_last gradient
    product = x.new_zeros(9 * channels, out_channels)
    blocks = row_blocks(n, height, row_bytes=width * 9 * channels * x.element_size(), block_bytes=block_bytes)
    shapes = [(images.stop - images.start, rows.stop - rows.start, width, 9, channels) for images, rows in blocks]
    buffer = x.new_empty(math.prod(shapes[0]))  # the first block is the largest
    for (images, rows), shape in zip(blocks, shapes, strict=True):
        columns = buffer[: math.prod(shape)].view(shape)
        for k, shift in enumerate(_nine_shifts(padded, images, rows.start, shape[1], width)):
            columns[:, :, :, k].copy_(shift)
        block_grad = grad[images, rows].reshape(-1, out_channels)
        product.addmm_(columns.view(-1, 9 * channels).T, block_grad)
    weight_grad = product.view(3, 3, channels, out_channels).permute(3, 2, 0, 1)
    return weight_grad.contiguous(memory_format=torch.channels_last)


def _nine_shifts(padded: torch.Tensor, images: slice, first_row: int, rows: int, width: int) -> list[torch.Tensor]:
    """The 3x3 neighbourhood of output rows `first_row` .. `first_row + rows` as nine views of `padded`, in the
    weights' (kernel row, kernel column) order."""
    return [padded[images, first_row + i : first_row + rows + i, j : j + width] for i in range(3) for j in range(3)]


def _own_kernels_input(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor | None:
    """`x` in the dtype vggnet's kernels run the layer in, where they measured faster; None where oneDNN's keep it.

    fp32 channels_last training (no autocast) on AVX2 CPUs (oneDNN's backward-weights kernel for NHWC is its old
    `jit:avx2` one there) and AVX-512 ones (vgg16's step at 224 1.22x, the compact one at 32x32 1.01x, on an
    AVX-512 EPYC); bf16 autocast where `winograd.winograd_pays` in bf16 (many channels, on CPUs where
    `winograd.bf16_winograd_pays`) on maps of at least `BF16_WINOGRAD_MIN_MAP_PIXELS` (vgg16's step at 224 1.15x
    on an AVX-512 EPYC); elsewhere oneDNN's kernels run bf16 natively."""
    if (
        torch.compiler.is_compiling()  # inductor compiles the convolutions; vggnet's kernels would break its graph
        or conv.in_channels < MIN_CHANNELS_FOR_OWN_KERNELS
        or not conv.weight.requires_grad
        or conv.weight.dtype != torch.float32
        or not x.is_contiguous(memory_format=torch.channels_last)
    ):
        return None
    if torch.is_autocast_enabled("cpu"):
        if torch.get_autocast_dtype("cpu") != torch.bfloat16:
            return None
        x = x.to(torch.bfloat16)
        big_map = x.shape[-2] * x.shape[-1] >= BF16_WINOGRAD_MIN_MAP_PIXELS
        return x if big_map and winograd_pays(conv.in_channels, x) else None
    fp32_pays = x.dtype == torch.float32 and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    return x if fp32_pays else None


class _ConvWithOwnKernels(torch.autograd.Function):
    """A 3x3 convolution (stride 1, padding 1): the forward and the input gradient by Winograd (`winograd`) or
    oneDNN, the weight gradient by Winograd (`winograd_grad`) or `weight_grad_as_matmul`. The weights are fp32;
    `x` is fp32, or bf16 (autocast) with Winograd for all three: the weights are transformed in fp32 and rounded
    once, the output and the input gradient are bf16, and the weight and bias gradients are summed in fp32."""

    @staticmethod
    @torch.autocast("cpu", enabled=False)  # the dtypes are chosen here, not by autocast
    def forward(ctx, x, weight, bias, winograd, winograd_grad):
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.winograd_grad = bias is not None, winograd_grad
        # kept for the input gradient
        ctx.winograd_weights = winograd_weights(weight).to(x.dtype) if winograd else None  # fp32 weights
        if winograd:
            return winograd_conv(x, ctx.winograd_weights, None if bias is None else bias.to(x.dtype))
        return F.conv2d(x, weight, bias, padding=1)

    @staticmethod
    @once_differentiable
    @torch.autocast("cpu", enabled=False)
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        grad_output = grad_output.contiguous(memory_format=torch.channels_last)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0] and ctx.winograd_weights is not None:
            grad_x = winograd_conv(grad_output, turned_winograd_weights(ctx.winograd_weights))
        elif ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_output, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False]
            )[0]
        if ctx.needs_input_grad[1] and ctx.winograd_grad:
            grad_weight = winograd_weight_grad(x, grad_output)
        elif ctx.needs_input_grad[1]:
            grad_weight = weight_grad_as_matmul(x, grad_output)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum((0, 2, 3), dtype=weight.dtype)
        return grad_x, grad_weight, grad_bias, None, None
