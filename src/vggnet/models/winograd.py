"""Winograd's minimal filtering F(2x2, 3x3) for VGG's 3x3 convolutions (stride 1, padding 1) in fp32 on the CPU
(Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015): the inference form's convolutions and,
in training on AVX2 CPUs, the forward pass and the input gradient (`cpu_training.py`).

Each 2x2 block of output pixels comes from a 4x4 tile of input: the tiles and the weights are transformed
(B^T d B and G g G^T), multiplied as 16 matrix products of (tiles, C) @ (C, O) — 16 multiplications per 4 outputs
and channel pair where the direct convolution makes 36, 2.25x fewer — and transformed back (A^T m A). The
transforms read and write the activations several times over, so it pays where the matrix products dominate: many
channels on small maps, whose activations stay in cache. On a 2-core AVX2 EPYC against oneDNN's fused convolution
(BENCHMARKS.md): 512 channels at 28x28 1.42x (batch 8) and 1.57x (batch 1), at 14x14 1.81x (batch 8); 128-256
channels at 56x56, batch 8, even; 64 channels and larger maps 0.4-0.9x. Outputs agree with the direct convolution
to about 3e-6 of their largest value in fp32 (float64: 1e-14).
"""

import torch
import torch.nn.functional as F

# fp32 convolutions with at least this many input channels, on inputs of at most this many pixels (batch x height
# x width: 8 x 28 x 28), run by Winograd: where it measured faster than oneDNN.
WINOGRAD_MIN_CHANNELS = 128
WINOGRAD_MAX_PIXELS = 8 * 28 * 28


def winograd_pays(in_channels: int, x: torch.Tensor) -> bool:
    """Whether a 3x3 convolution with `in_channels` inputs runs `x` faster by `winograd_conv` than by oneDNN: fp32,
    at least `WINOGRAD_MIN_CHANNELS` input channels, at most `WINOGRAD_MAX_PIXELS` pixels, even sides."""
    n, _, height, width = x.shape
    small = n * height * width <= WINOGRAD_MAX_PIXELS and height % 2 == 0 and width % 2 == 0
    return small and in_channels >= WINOGRAD_MIN_CHANNELS and x.dtype == torch.float32


def winograd_weights(weight: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """A 3x3 convolution's weights (O, C, 3, 3) transformed for `winograd_conv`: G g G^T, as (16, C, O). With
    `transposed`, those of the convolution that computes its input gradient from its output gradient (the kernel
    turned by 180 degrees, inputs and outputs swapped): (16, O, C)."""
    kernel = weight.detach().permute(2, 3, 1, 0)  # (3, 3, C, O)
    if transposed:
        kernel = kernel.flip(0, 1).transpose(2, 3)
    kernel = kernel.contiguous()
    transformed = kernel.new_empty(4, 4, *kernel.shape[2:])
    for a, row in enumerate(_g_times(*kernel)):  # G g, then (G g) G^T
        for b, value in enumerate(_g_times(*row)):
            transformed[a, b].copy_(value)
    return transformed.view(16, *kernel.shape[2:])


def _g_times(g0: torch.Tensor, g1: torch.Tensor, g2: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The four rows of G @ (g0, g1, g2) for G of F(2x2, 3x3): ((1, 0, 0), (1/2, 1/2, 1/2), (1/2, -1/2, 1/2),
    (0, 0, 1))."""
    return g0, (g0 + g1 + g2).mul_(0.5), (g0 - g1 + g2).mul_(0.5), g2


def winograd_conv(
    x: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False
) -> torch.Tensor:
    """`relu(conv2d(x, weight, bias, padding=1))` (or without the ReLU) for `weights = winograd_weights(weight)`.

    `x` is (N, C, H, W) with H and W even; the output is channels_last, as oneDNN's would be."""
    n, channels, height, width = x.shape
    if height % 2 or width % 2:
        raise ValueError(f"winograd_conv needs an even height and width, got {height}x{width}")
    out_channels = weights.shape[2]
    tiles_h, tiles_w = height // 2, width // 2
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # (N, H + 2, W + 2, C)
    # B^T d B, rows then columns; tile (i, j) starts at padded row 2i, column 2j.
    rows = [padded[:, k : k + 2 * tiles_h : 2] for k in range(4)]
    rows = [rows[0] - rows[2], rows[1] + rows[2], rows[2] - rows[1], rows[1] - rows[3]]
    tiles = x.new_empty(4, 4, n, tiles_h, tiles_w, channels)
    for a, row in enumerate(rows):
        cols = [row[:, :, k : k + 2 * tiles_w : 2] for k in range(4)]
        torch.sub(cols[0], cols[2], out=tiles[a, 0])
        torch.add(cols[1], cols[2], out=tiles[a, 1])
        torch.sub(cols[2], cols[1], out=tiles[a, 2])
        torch.sub(cols[1], cols[3], out=tiles[a, 3])
    m = torch.bmm(tiles.view(16, -1, channels), weights).view(4, 4, n, tiles_h, tiles_w, out_channels)
    # A^T m A, rows then columns, each output pixel written in place.
    z = (m[0] + m[1] + m[2], m[1] - m[2] - m[3])
    out = torch.empty(n, out_channels, height, width, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    blocks = out.permute(0, 2, 3, 1).view(n, tiles_h, 2, tiles_w, 2, out_channels)
    for a, row in enumerate(z):
        torch.add(row[0] + row[1], row[2], out=blocks[:, :, a, :, 0])
        torch.sub(row[1] - row[2], row[3], out=blocks[:, :, a, :, 1])
    if bias is not None:
        blocks.add_(bias)
    if relu:
        out.relu_()
    return out
