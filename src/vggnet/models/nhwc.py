"""Channels_last maps as vggnet's CPU kernels walk them (`cpu_training.weight_grad_as_matmul`, `winograd`): padded
for a 3x3 convolution, and split into blocks of rows within a byte budget, each of which a kernel builds its
intermediates for, uses while they are still in cache, and leaves for the next."""

import torch
import torch.nn.functional as F


def padded_nhwc(x: torch.Tensor) -> torch.Tensor:
    """`x` (N, C, H, W) as (N, H + 2, W + 2, C) with a border of zeros: a 3x3 convolution's padding (one copy; the
    permute is free for a channels_last `x`)."""
    return F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))


def row_blocks(images: int, rows: int, row_bytes: int, block_bytes: int) -> list[tuple[slice, slice]]:
    """(images, rows) slices covering `images` maps of `rows` rows, each block at most `block_bytes` of
    `row_bytes` a row (at least one row): as many whole images as fit, or, where one image does not, as many of
    its rows as fit."""
    fit = max(1, block_bytes // row_bytes)
    if fit >= rows:
        per_block = fit // rows
        return [(slice(i, min(i + per_block, images)), slice(0, rows)) for i in range(0, images, per_block)]
    return [(slice(i, i + 1), slice(r, min(r + fit, rows))) for i in range(images) for r in range(0, rows, fit)]
