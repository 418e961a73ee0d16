"""Winograd's F(2x2, 3x3) (`vggnet.models.winograd`) against aten's direct convolution."""

import pytest
import torch
import torch.nn.functional as F

from vggnet.models.winograd import winograd_conv, winograd_weights


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


def test_fp32_winograd_stays_within_its_stated_rounding():
    torch.manual_seed(0)
    x = torch.randn(2, 512, 14, 14).relu().contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(512, 512, 3, padding=1)
    with torch.no_grad():
        expected = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
        ours = winograd_conv(x, winograd_weights(conv.weight), conv.bias)
    assert (ours.double() - expected).abs().max() <= 1e-5 * expected.abs().max()  # the docstring's "about 3e-6"


def test_odd_sides_are_refused_with_the_size():
    with pytest.raises(ValueError, match="even height and width, got 7x8"):
        winograd_conv(torch.randn(1, 2, 7, 8), winograd_weights(torch.randn(3, 2, 3, 3)))
