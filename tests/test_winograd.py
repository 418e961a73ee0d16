"""Winograd's F(2x2, 3x3) (`vggnet.models.winograd`) against aten's direct convolution."""

import pytest
import torch
import torch.nn.functional as F

import vggnet.models.winograd as winograd
from vggnet.models.winograd import turned_winograd_weights, winograd_conv, winograd_weight_grad, winograd_weights


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize(
    ("shape", "out_channels", "bias", "relu"), [((2, 5, 6, 4), 7, True, True), ((1, 3, 8, 10), 4, False, False)]
)
def test_winograd_is_the_convolution(memory_format, shape, out_channels, bias, relu):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64).contiguous(memory_format=memory_format)
    weight = torch.randn(out_channels, shape[1], 3, 3, dtype=torch.float64)
    b = torch.randn(out_channels, dtype=torch.float64) if bias else None
    expected = F.conv2d(x, weight, b, padding=1)
    ours = winograd_conv(x, winograd_weights(weight), b, relu=relu)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, expected.relu() if relu else expected, atol=1e-12, rtol=1e-12)


def test_turned_weights_give_the_input_gradient():
    """The convolution of the output's gradient with the turned weights is the layer's input gradient."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6, 8, dtype=torch.float64)
    weight, grad = torch.randn(3, 5, 3, 3, dtype=torch.float64), torch.randn(2, 3, 6, 8, dtype=torch.float64)
    expected = torch.ops.aten.convolution_backward(
        grad, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False]
    )[0]
    ours = winograd_conv(grad, turned_winograd_weights(winograd_weights(weight)))
    torch.testing.assert_close(ours, expected, atol=1e-12, rtol=1e-12)


# float64 tiles of 2 channels, 3 tiles a row: 16 x 3 x 2 x 8 bytes a row of tiles
@pytest.mark.parametrize(
    ("shape", "rows_per_chunk", "chunks"),
    [
        ((5, 2, 4, 6), 4, [(slice(0, 2), slice(0, 2)), (slice(2, 4), slice(0, 2)), (slice(4, 5), slice(0, 2))]),
        ((2, 2, 10, 6), 2, [(slice(i, i + 1), slice(r, min(r + 2, 5))) for i in (0, 1) for r in (0, 2, 4)]),
    ],
)
def test_winograd_in_chunks_is_the_convolution_and_its_weight_gradient(shape, rows_per_chunk, chunks, monkeypatch):
    """Whole images a chunk (5 images of 2 tile rows, 2 images a chunk), or bands of one image's rows (5 tile rows,
    2 a chunk): every output pixel written once, with the bias and the ReLU, and every tile's part of the weight
    gradient summed once."""
    monkeypatch.setattr(winograd, "WINOGRAD_CHUNK_BYTES", rows_per_chunk * 16 * 3 * 2 * 8)
    channels = shape[1]
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    assert winograd._chunks(x, 2) == chunks
    weight, bias = torch.randn(2, channels, 3, 3, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    expected = F.conv2d(x, weight, bias, padding=1).relu()
    torch.testing.assert_close(winograd_conv(x, winograd_weights(weight), bias, relu=True), expected)
    grad = torch.randn(expected.shape, dtype=torch.float64)
    expected_grad = torch.ops.aten.convolution_backward(
        grad, x.contiguous(), weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]
    )[1]
    ours = winograd_weight_grad(x, grad.contiguous(memory_format=torch.channels_last))
    assert ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, expected_grad, atol=1e-12, rtol=1e-12)


def test_fp32_winograd_stays_within_its_stated_rounding():
    torch.manual_seed(0)
    x = torch.randn(2, 512, 14, 14).relu().contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(512, 512, 3, padding=1)
    with torch.no_grad():
        expected = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
        ours = winograd_conv(x, winograd_weights(conv.weight), conv.bias)
    assert (ours.double() - expected).abs().max() <= 1e-5 * expected.abs().max()  # the docstring's "about 3e-6"


def test_bf16_winograd_stays_within_its_stated_rounding():
    """bf16 tiles, products and transforms back: within about 1e-2 of the outputs' largest value, and the weight
    gradient summed in fp32, against float64 on the same bf16 inputs (oneDNN's bf16 convolution: about 4e-3)."""
    torch.manual_seed(0)
    x = torch.randn(2, 512, 14, 14).relu().bfloat16().contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(512, 512, 3, padding=1)
    grad = torch.randn(2, 512, 14, 14).bfloat16().contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        weight = conv.weight.bfloat16().double()
        expected = F.conv2d(x.double(), weight, conv.bias.double(), padding=1)
        ours = winograd_conv(x, winograd_weights(conv.weight).bfloat16(), conv.bias.bfloat16())
        expected_grad = torch.ops.aten.convolution_backward(
            grad.double(), x.double(), weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]
        )[1]
        ours_grad = winograd_weight_grad(x, grad)
    assert ours.dtype == torch.bfloat16 and ours_grad.dtype == torch.float32
    assert (ours.double() - expected).abs().max() <= 2e-2 * expected.abs().max()
    assert (ours_grad.double() - expected_grad).abs().max() <= 2e-2 * expected_grad.abs().max()


@pytest.mark.parametrize(("native", "amx", "taken"), [(True, False, True), (True, True, False), (False, False, False)])
def test_bf16_takes_winograd_only_where_it_was_measured_faster(native, amx, taken, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    winograd.bf16_winograd_pays.cache_clear()
    x = torch.randn(1, 256, 56, 56, dtype=torch.bfloat16)
    try:
        assert winograd.winograd_pays(256, x) is taken
        assert winograd.winograd_weight_grad_pays(256, x) is taken
        assert winograd.winograd_pays(256, x.float())  # fp32 on any CPU
    finally:
        winograd.bf16_winograd_pays.cache_clear()


def test_odd_sides_are_refused_with_the_size():
    with pytest.raises(ValueError, match="even height and width, got 7x8"):
        winograd_conv(torch.randn(1, 2, 7, 8), winograd_weights(torch.randn(3, 2, 3, 3)))
    with pytest.raises(ValueError, match="even height and width, got 6x5"):
        winograd_weight_grad(torch.randn(1, 2, 6, 5), torch.randn(1, 3, 6, 5))
