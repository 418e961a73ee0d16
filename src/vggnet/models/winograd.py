"""Winograd's minimal filtering F(2x2, 3x3) for VGG's 3x3 convolutions (stride 1, padding 1) on the CPU (Lavin &
Gray, "Fast Algorithms for Convolutional Neural Networks", 2015), in fp32 and, on CPUs with AVX512-BF16 and no AMX,
in bf16: the inference form's convolutions and, in training (`cpu_training.py`), the forward pass, the input
gradient and the weight gradient.

Each 2x2 block of output pixels comes from a 4x4 tile of input: the tiles and the weights are transformed
(B^T d B and G g G^T), multiplied as 16 matrix products of (tiles, C) @ (C, O) — 16 multiplications per 4 outputs
and channel pair where the direct convolution makes 36, 2.25x fewer — and transformed back (A^T m A). The weight
gradient is the same algorithm run backwards: 16 products of (C, tiles) @ (tiles, O). The transforms read and
write the activations several times over, so the work goes in chunks whose tiles stay in cache (16 MB), and it
pays where the products dominate: many channels. On a 2-core AVX2 EPYC (BENCHMARKS.md), against oneDNN's fused
convolution at batch 8: 256 channels at 56x56 1.19x, 512 at 28x28 1.51x, at 14x14 1.54x; 128 channels lose
(0.7-0.95x). The weight gradient against the matrix product of shifted copies (`cpu_training`): 1.04-1.2x for 64
channels, 1.2-2x from 128 up; 32 channels lose (0.84x). Outputs agree with the direct convolution to about 3e-6 of
their largest value in fp32 (float64: 1e-14). In bf16 the tiles, the products and the sums back are each rounded
to bf16 (the products are summed in fp32 in the matrix products, and across chunks for the weight gradient):
outputs within about 1e-2 of their largest value, where oneDNN's bf16 convolution is within about 4e-3.
"""

import functools

import torch

from .nhwc import padded_nhwc, row_blocks

# fp32 convolutions with at least this many input channels, on maps of at most this many pixels (height x width:
# 56 x 56), run by Winograd: where it measured faster than oneDNN at batch 1 to 128.
WINOGRAD_MIN_CHANNELS = 256
WINOGRAD_MAX_MAP_PIXELS = 56 * 56
# In training, the weight gradients of convolutions with at least this many input channels, on maps of any size (even
# sides): where it measured faster than the matrix-product weight gradient (`cpu_training.weight_grad_as_matmul`).
WINOGRAD_WEIGHT_GRAD_MIN_CHANNELS = 64
# The work goes in chunks of at most this many bytes of transformed tiles (whole images, or rows of tiles of one),
# each transformed, multiplied and transformed back while it is still in cache.
WINOGRAD_CHUNK_BYTES = 16 << 20

# G of F(2x2, 3x3), which transforms the weights, and the order of its rows for the kernel turned by 180 degrees
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
_TURNED = (3, 1, 2, 0)


def winograd_pays(in_channels: int, x: torch.Tensor) -> bool:
    """Whether a 3x3 convolution with `in_channels` inputs runs `x` faster by `winograd_conv` than by oneDNN: where
    `winograd_shape_pays` and `winograd_dtype_pays`."""
    return winograd_shape_pays(in_channels, x) and winograd_dtype_pays(x.dtype)


def winograd_shape_pays(in_channels: int, x: torch.Tensor) -> bool:
    """At least `WINOGRAD_MIN_CHANNELS` input channels, maps of at most `WINOGRAD_MAX_MAP_PIXELS`, even sides (a
    question of shapes only, which torch.compile answers while tracing)."""
    height, width = x.shape[-2:]
    return in_channels >= WINOGRAD_MIN_CHANNELS and height * width <= WINOGRAD_MAX_MAP_PIXELS and _fits(x)


def winograd_dtype_pays(dtype: torch.dtype) -> bool:
    """fp32, or bf16 where `bf16_winograd_pays`."""
    return dtype == torch.float32 or (dtype == torch.bfloat16 and bf16_winograd_pays())


def winograd_weight_grad_pays(in_channels: int, x: torch.Tensor) -> bool:
    """Whether `winograd_weight_grad` computes the weight gradient of a 3x3 convolution with `in_channels` inputs
    and input `x` faster than the alternative: in fp32 the matrix product, from `WINOGRAD_WEIGHT_GRAD_MIN_CHANNELS`
    input channels on even sides; in bf16 oneDNN's, where `winograd_pays` (on an AVX-512 EPYC at batch 8: 1.2-1.3x
    for 256 channels at 56x56 and 512 at 28x28, 1.0x at 14x14)."""
    if x.dtype == torch.bfloat16:
        return winograd_pays(in_channels, x)
    return in_channels >= WINOGRAD_WEIGHT_GRAD_MIN_CHANNELS and _fits(x) and x.dtype == torch.float32


@functools.cache
def bf16_winograd_pays() -> bool:
    """Whether bf16 convolutions run by Winograd where fp32 ones do: on CPUs with AVX512-BF16 and no AMX, where
    its 16 products per 2x2 block run as oneDNN's bf16 matrix products (on an AVX-512 EPYC at batch 8, against
    oneDNN's bf16 convolution with its ReLU: 256 channels at 56x56 1.3x, 512 at 28x28 and 14x14 1.5x; outputs
    within 1e-2 of their largest value where oneDNN's are within 4e-3, BENCHMARKS.md). With AMX, oneDNN's own
    bf16 convolutions are unmeasured against it, and they keep them."""
    return torch.cpu._is_avx512_bf16_supported() and not torch.cpu._is_amx_tile_supported()


def _fits(x: torch.Tensor) -> bool:
    """F(2x2, 3x3) on `x`: whole 2x2 blocks of output, so even sides."""
    height, width = x.shape[-2:]
    return height % 2 == 0 and width % 2 == 0


def winograd_weights(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution's weights (O, C, 3, 3) transformed for `winograd_conv`: G g G^T, as (16, C, O), by one
    matrix product of the Kronecker product G (x) G, (16, 9), and the nine (C, O) kernel taps; in at least fp32,
    and in the weights' dtype (bf16 weights: one rounding, not one per step of the transform)."""
    out_channels, channels = weight.shape[:2]
    exact = weight.detach().to(torch.promote_types(weight.dtype, torch.float32))
    taps = exact.permute(2, 3, 1, 0).reshape(9, channels * out_channels)
    return (_g_kron(exact) @ taps).view(16, channels, out_channels).to(weight.dtype)


def turned_winograd_weights(weights: torch.Tensor) -> torch.Tensor:
    """`winograd_weights` of the convolution that computes a layer's input gradient from its output gradient (the
    kernel turned by 180 degrees, inputs and outputs swapped), from the layer's own `weights` (16, C, O): G with
    its columns reversed is G with rows 0 and 3 swapped, so turning the kernel swaps rows and columns 0 and 3 of
    each 4x4 transform. (16, O, C), a transposed view of one copy."""
    order = [4 * a + b for a in _TURNED for b in _TURNED]
    return weights[order].transpose(1, 2)


def winograd_conv(
    x: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False
) -> torch.Tensor:
    """`relu(conv2d(x, weight, bias, padding=1))` (or without the ReLU) for `weights = winograd_weights(weight)`.

    `x` is (N, C, H, W) with H and W even; the output is channels_last, as oneDNN's would be."""
    _require_even_sides(x)
    n, channels, height, width = x.shape
    out_channels = weights.shape[2]
    out = torch.empty(n, out_channels, height, width, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    padded, blocks = padded_nhwc(x), _output_blocks(out)
    for images, rows in _chunks(x, max(channels, out_channels)):
        tiles = _input_tiles(padded[images, 2 * rows.start : 2 * rows.stop + 2])
        products = torch.bmm(tiles.view(16, -1, channels), weights).view(*tiles.shape[:-1], out_channels)
        chunk = blocks[images, rows]
        _inverse_transform(products, chunk)
        if bias is not None:
            chunk.add_(bias)
        if relu:
            chunk.relu_()
    return out


@torch.library.custom_op("vggnet::winograd_conv", mutates_args=())
def winograd_conv_op(x: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None, relu: bool) -> torch.Tensor:
    """`winograd_conv` as an operator, which a torch.compile graph calls as it is: dynamo neither traces into its
    Python nor breaks the graph at it."""
    return winograd_conv(x, weights, bias, relu)


@winograd_conv_op.register_fake
def _winograd_conv_shape(x: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None, relu: bool) -> torch.Tensor:
    n, _, height, width = x.shape
    shape = (n, weights.shape[2], height, width)
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)


def winograd_weight_grad(x: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
    """The weight gradient of a 3x3 convolution (stride 1, padding 1) with input `x` (N, C, H, W), H and W even,
    and output gradient `grad_output` (N, O, H, W), by the same F(2x2, 3x3): a 2x2 block of output is A^T (U * V) A
    for the tile's transformed input V = B^T d B and the transformed weights U = G g G^T, so the gradient of U is
    the sum over tiles of V times the transformed output gradient A dY A^T (16 matrix products of (C, tiles) @
    (tiles, O), summed chunk by chunk), and the weights' is G^T (that) G, by one matrix product as in
    `winograd_weights`. `grad_output` is channels_last; the result (O, C, 3, 3) is too, in fp32 for bf16 inputs
    (the chunks' bf16 products summed in fp32)."""
    _require_even_sides(x)
    channels, out_channels = x.shape[1], grad_output.shape[1]
    padded, blocks = padded_nhwc(x), _output_blocks(grad_output)
    transformed_grad = x.new_zeros(16, channels, out_channels, dtype=torch.promote_types(x.dtype, torch.float32))
    for images, rows in _chunks(x, max(channels, out_channels)):
        tiles = _input_tiles(padded[images, 2 * rows.start : 2 * rows.stop + 2]).view(16, -1, channels)
        grad_tiles = _gradient_tiles(blocks[images, rows]).view(16, -1, out_channels)
        if tiles.dtype == transformed_grad.dtype:
            transformed_grad.baddbmm_(tiles.transpose(1, 2), grad_tiles)
        else:
            transformed_grad += torch.bmm(tiles.transpose(1, 2), grad_tiles)
    taps = _g_kron(transformed_grad).T @ transformed_grad.view(16, channels * out_channels)  # G^T (the gradient of U) G
    weight_grad = taps.view(3, 3, channels, out_channels)
    return weight_grad.permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)


def _require_even_sides(x: torch.Tensor) -> None:
    """F(2x2, 3x3) computes whole 2x2 blocks of output: a ValueError naming the sides where one is odd."""
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ValueError(f"Winograd's F(2x2, 3x3) needs an even height and width, got {x.shape[-2]}x{x.shape[-1]}")


def _output_blocks(y: torch.Tensor) -> torch.Tensor:
    """A channels_last (N, O, H, W) map as the (N, H / 2, 2, W / 2, 2, O) view of its 2x2 blocks."""
    n, out_channels, height, width = y.shape
    return y.permute(0, 2, 3, 1).view(n, height // 2, 2, width // 2, 2, out_channels)


def _chunks(x: torch.Tensor, widest_channels: int) -> list[tuple[slice, slice]]:
    """(images, rows of tiles) to transform at a time: a row of tiles holds 16 x W / 2 values of up to
    `widest_channels` channels, and a chunk at most `WINOGRAD_CHUNK_BYTES` of them."""
    n, _, height, width = x.shape
    tile_row_bytes = 16 * (width // 2) * widest_channels * x.element_size()
    return row_blocks(n, height // 2, tile_row_bytes, WINOGRAD_CHUNK_BYTES)


def _input_tiles(padded: torch.Tensor) -> torch.Tensor:
    """B^T d B for every 4x4 tile of `padded` (n, 2 * tiles_h + 2, 2 * tiles_w + 2, C) that starts at an even row
    and column: (4, 4, n, tiles_h, tiles_w, C), rows then columns."""
    n, padded_h, padded_w, channels = padded.shape
    tiles_h, tiles_w = (padded_h - 2) // 2, (padded_w - 2) // 2
    rows = [padded[:, k : k + 2 * tiles_h : 2] for k in range(4)]
    rows = [rows[0] - rows[2], rows[1] + rows[2], rows[2] - rows[1], rows[1] - rows[3]]
    tiles = padded.new_empty(4, 4, n, tiles_h, tiles_w, channels)
    for a, row in enumerate(rows):
        cols = [row[:, :, k : k + 2 * tiles_w : 2] for k in range(4)]
        torch.sub(cols[0], cols[2], out=tiles[a, 0])
        torch.add(cols[1], cols[2], out=tiles[a, 1])
        torch.sub(cols[2], cols[1], out=tiles[a, 2])
        torch.sub(cols[1], cols[3], out=tiles[a, 3])
    return tiles


def _inverse_transform(products: torch.Tensor, blocks: torch.Tensor) -> None:
    """A^T m A of `products` (4, 4, n, tiles_h, tiles_w, O), rows then columns, written into the 2x2 output blocks
    `blocks` (n, tiles_h, 2, tiles_w, 2, O)."""
    m = products
    for a, row in enumerate((m[0] + m[1] + m[2], m[1] - m[2] - m[3])):
        torch.add(row[0] + row[1], row[2], out=blocks[:, :, a, :, 0])
        torch.sub(row[1] - row[2], row[3], out=blocks[:, :, a, :, 1])


def _gradient_tiles(blocks: torch.Tensor) -> torch.Tensor:
    """A dY A^T of the output gradient's 2x2 blocks `blocks` (n, tiles_h, 2, tiles_w, 2, O), A = A^T's transpose:
    (4, 4, n, tiles_h, tiles_w, O), rows then columns."""
    n, tiles_h, _, tiles_w, _, out_channels = blocks.shape
    tiles = blocks.new_empty(4, 4, n, tiles_h, tiles_w, out_channels)
    y0, y1 = blocks[:, :, 0], blocks[:, :, 1]
    for a, row in enumerate((y0, y0 + y1, y0 - y1, -y1)):
        c0, c1 = row[:, :, :, 0], row[:, :, :, 1]
        tiles[a, 0].copy_(c0)
        torch.add(c0, c1, out=tiles[a, 1])
        torch.sub(c0, c1, out=tiles[a, 2])
        torch.neg(c1, out=tiles[a, 3])
    return tiles


def _g_kron(like: torch.Tensor) -> torch.Tensor:
    """G (x) G, (16, 9), in `like`'s dtype and device: row 4a + b of the product with a kernel's taps (3 x 3, row
    by row) is (G g G^T)[a, b]."""
    g = torch.tensor(_G, dtype=like.dtype, device=like.device)
    return torch.kron(g, g)
