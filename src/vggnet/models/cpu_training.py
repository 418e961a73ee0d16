"""How a VGG 3x3 convolution (stride 1, padding 1) runs while training on the CPU, where two of oneDNN's kernels
are far below the machine's speed (2-core AVX2 EPYC, fp32, BENCHMARKS.md):

- on a map of at most 2x2 pixels, forward and backward alike: the layer runs as one matrix product of the input's
  nine shifted copies (`conv_as_matmul`);
- the weight gradient of channels_last activations on AVX2 CPUs without AVX-512 (oneDNN's `jit:avx2` backward-weights
  kernel reads NHWC at 16-57% of the ceiling where its forward and input-gradient kernels reach 90-100%): the
  forward and the input gradient stay oneDNN's, the weight gradient is a matrix product of the input's nine shifted
  copies, built a block of rows at a time, and the output gradient (`conv_with_matmul_weight_grad`); there, where
  `winograd.winograd_pays` (many channels, a small map), the forward and the input gradient run by Winograd's
  F(2x2, 3x3) instead, with the weights transformed at every step.

Inference, export and int8 never come here: they keep the convolution (`training_conv` is called in training mode
only).
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from .winograd import winograd_conv, winograd_pays, winograd_weights

# A convolution on a map of at most this many pixels (2x2) runs as a matrix product, forward and backward.
SMALL_MAP_PIXELS = 4
# Convolutions with fewer input channels (the RGB input layer) keep oneDNN's weight gradient: as fast there.
MIN_CHANNELS_FOR_MATMUL_WEIGHT_GRAD = 16
# The nine shifted copies are built this many bytes at a time for each 64 output channels (8 MB for 64, 64 MB for
# 512): a product with more outputs does more work per copied byte and runs faster on longer sums, while a 64-channel
# layer's runs fastest on a block that stays in the last-level cache (vgg16 at 224: 1.08x over 8 MB for every layer).
WEIGHT_GRAD_BLOCK_BYTES_PER_64_OUTPUTS = 8 << 20


def training_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` for a VGG convolution in training mode on the CPU, by the fastest of the three ways above."""
    if x.shape[-2] * x.shape[-1] <= SMALL_MAP_PIXELS:
        return conv_as_matmul(conv, x)
    if _matmul_weight_grad_pays(conv, x):
        return conv_with_matmul_weight_grad(conv, x, winograd=winograd_pays(conv.in_channels, x))
    return conv(x)


def conv_as_matmul(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` for a 3x3 convolution (stride 1, padding 1) computed as one matrix product of the input's nine
    shifted copies and the weights, both in channels_last order (free views of channels_last tensors); the
    output is channels_last. On a 2x2 map, batch 64, 512 channels, a training step of it (forward and backward)
    took 61 ms where oneDNN's convolution took 163 ms (2-core AVX2 CPU, fp32, BENCHMARKS.md; on an AMX Xeon in
    bf16 the matrix product was 2x faster at 2x2 too); from 4x4 up the convolution is as fast or faster."""
    n, channels, height, width = x.shape
    shifted = _nine_shifts(_padded_nhwc(x), slice(None), 0, height, width)
    columns = torch.stack(shifted, dim=3).reshape(n * height * width, 9 * channels)
    weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, 9 * channels)
    y = F.linear(columns, weight, conv.bias)
    return y.reshape(n, height, width, conv.out_channels).permute(0, 3, 1, 2)


def conv_with_matmul_weight_grad(conv: nn.Conv2d, x: torch.Tensor, winograd: bool) -> torch.Tensor:
    """`conv(x)` whose backward computes the weight gradient with `weight_grad_as_matmul`; the forward and the
    input gradient are oneDNN's, as in `conv(x)`, or with `winograd` `winograd_conv`'s (even sides only)."""
    return _ConvWithMatmulWeightGrad.apply(x, conv.weight, conv.bias, winograd)


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
    padded = _padded_nhwc(x)
    grad = grad_output.permute(0, 2, 3, 1)  # (N, H, W, O), free for a channels_last gradient
    product = x.new_zeros(9 * channels, out_channels)
    blocks = _blocks(n, height, row_bytes=width * 9 * channels * x.element_size(), block_bytes=block_bytes)
    first_block_rows = (blocks[0][1] - blocks[0][0]) * (blocks[0][3] - blocks[0][2])  # the largest block
    buffer = x.new_empty(first_block_rows * width * 9 * channels)
    for first_image, end_image, first_row, end_row in blocks:
        images, rows = slice(first_image, end_image), end_row - first_row
        shape = (end_image - first_image, rows, width, 9, channels)
        columns = buffer[: shape[0] * rows * width * 9 * channels].view(shape)
        for k, shift in enumerate(_nine_shifts(padded, images, first_row, rows, width)):
            columns[:, :, :, k].copy_(shift)
        block_grad = grad[images, first_row:end_row].reshape(-1, out_channels)
        product.addmm_(columns.view(-1, 9 * channels).T, block_grad)
    weight_grad = product.view(3, 3, channels, out_channels).permute(3, 2, 0, 1)
    return weight_grad.contiguous(memory_format=torch.channels_last)


def _padded_nhwc(x: torch.Tensor) -> torch.Tensor:
    """`x` (N, C, H, W) as (N, H + 2, W + 2, C) with a border of zeros: a 3x3 convolution's padding."""
    return F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))


def _nine_shifts(padded: torch.Tensor, images: slice, first_row: int, rows: int, width: int) -> list[torch.Tensor]:
    """The 3x3 neighbourhood of output rows `first_row` .. `first_row + rows` as nine views of `padded`, in the
    weights' (kernel row, kernel column) order."""
    return [padded[images, first_row + i : first_row + rows + i, j : j + width] for i in range(3) for j in range(3)]


def _blocks(n: int, height: int, row_bytes: int, block_bytes: int) -> list[tuple[int, int, int, int]]:
    """(first image, end image, first row, end row) blocks covering N images of `height` rows, each at most
    `block_bytes` (at least one row): whole images where one fits, else rows of one image."""
    rows = max(1, block_bytes // row_bytes)
    if rows >= height:
        images = rows // height
        return [(i, min(i + images, n), 0, height) for i in range(0, n, images)]
    return [(i, i + 1, r, min(r + rows, height)) for i in range(n) for r in range(0, height, rows)]


def _matmul_weight_grad_pays(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Measured faster: fp32 channels_last training (no autocast) on a CPU without AVX-512, where oneDNN's
    backward-weights kernel for NHWC is its old `jit:avx2` one. Other CPUs and precisions are not measured yet, so
    they keep oneDNN's kernels."""
    return (
        conv.in_channels >= MIN_CHANNELS_FOR_MATMUL_WEIGHT_GRAD
        and conv.weight.requires_grad
        and x.dtype == conv.weight.dtype == torch.float32
        and x.is_contiguous(memory_format=torch.channels_last)
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.cpu.get_cpu_capability() == "AVX2"
    )


class _ConvWithMatmulWeightGrad(torch.autograd.Function):
    """A 3x3 convolution (stride 1, padding 1): oneDNN's or Winograd's forward and input gradient,
    `weight_grad_as_matmul`'s weight gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, winograd):
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.winograd = bias is not None, winograd
        if winograd:
            return winograd_conv(x, winograd_weights(weight), bias)
        return F.conv2d(x, weight, bias, padding=1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        grad_output = grad_output.contiguous(memory_format=torch.channels_last)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0] and ctx.winograd:
            grad_x = winograd_conv(grad_output, winograd_weights(weight, transposed=True))
        elif ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_output, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False]
            )[0]
        if ctx.needs_input_grad[1]:
            grad_weight = weight_grad_as_matmul(x, grad_output)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None
