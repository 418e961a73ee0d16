"""Training's CPU convolutions (`vggnet.models.cpu_training`) against torchvision's VGG and aten's own convolution
gradients: the same outputs and gradients, taken exactly where they are meant to be."""

import pytest
import torch
import torch.nn.functional as F
import torchvision

import vggnet
import vggnet.models.cpu_training as cpu_training
import vggnet.models.winograd as winograd


def _record(monkeypatch, name, argument=1):
    """The shapes of the input (positional `argument`) of every call of `cpu_training`'s `name`."""
    calls, original = [], getattr(cpu_training, name)
    monkeypatch.setattr(cpu_training, name, lambda *a, **k: calls.append(tuple(a[argument].shape)) or original(*a, **k))
    return calls


def _assert_trains_like_torchvision(model, reference, x):
    ours, theirs = model(x), reference(x.contiguous())
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    ours.square().sum().backward()
    theirs.square().sum().backward()
    for (name, mine), other in zip(model.named_parameters(), reference.parameters(), strict=True):
        scale = other.grad.abs().max().item()
        torch.testing.assert_close(mine.grad, other.grad, atol=1e-4 * scale, rtol=1e-4, msg=name)


def _vgg11_pair(memory_format=torch.channels_last):
    torch.manual_seed(0)
    reference = torchvision.models.vgg11(num_classes=3, dropout=0.0).train()
    model = vggnet.create_model("vgg11", num_classes=3, dropout=0.0).to(memory_format=memory_format).train()
    model.load_state_dict(reference.state_dict())
    return model, reference


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_training_on_2x2_maps_runs_as_a_matrix_product_with_torchvisions_results(memory_format, monkeypatch):
    calls = _record(monkeypatch, "conv_as_matmul")
    model, reference = _vgg11_pair(memory_format)
    x = torch.randn(4, 3, 32, 32)
    _assert_trains_like_torchvision(model, reference, x.contiguous(memory_format=memory_format))
    assert calls == [(4, 512, 2, 2), (4, 512, 2, 2)]  # block 5's two convolutions, and only they
    model.eval()
    with torch.no_grad():
        model(x)
    assert len(calls) == 2  # inference keeps the convolutions (and what export and int8 trace)


@pytest.mark.parametrize(
    ("shape", "out_channels", "block_bytes"),
    [
        ((3, 16, 7, 5), 8, 1 << 30),  # all images in one block
        ((3, 16, 7, 5), 8, 2 * 5 * 9 * 16 * 8),  # two rows of one image a block, the last block one row
        ((5, 4, 6, 6), 12, 2 * 6 * 6 * 9 * 4 * 8),  # two images a block, the last block one image
    ],
)
def test_matmul_weight_grad_is_atens(shape, out_channels, block_bytes):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(shape[0], out_channels, *shape[2:], dtype=torch.float64)
    weight = torch.randn(out_channels, shape[1], 3, 3, dtype=torch.float64)
    expected = torch.ops.aten.convolution_backward(
        grad, x.contiguous(), weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]
    )[1]
    ours = cpu_training.weight_grad_as_matmul(x, grad.contiguous(memory_format=torch.channels_last), block_bytes)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, expected, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize(("out_channels", "block_megabytes"), [(32, 8), (64, 8), (128, 16), (512, 64)])
def test_matmul_weight_grad_blocks_grow_with_the_output_channels(out_channels, block_megabytes, monkeypatch):
    sizes, blocks = [], cpu_training.row_blocks
    monkeypatch.setattr(cpu_training, "row_blocks", lambda *a, **k: sizes.append(k["block_bytes"]) or blocks(*a, **k))
    x = torch.randn(1, 2, 4, 4).contiguous(memory_format=torch.channels_last)
    cpu_training.weight_grad_as_matmul(
        x, torch.randn(1, out_channels, 4, 4).contiguous(memory_format=torch.channels_last)
    )
    assert sizes == [block_megabytes << 20]


@pytest.mark.parametrize("winograd_max_map", [56 * 56, 16 * 12 - 1])
def test_fp32_training_on_avx2_takes_vggnets_kernels_with_torchvisions_results(winograd_max_map, monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(winograd, "WINOGRAD_MAX_MAP_PIXELS", winograd_max_map)
    calls = _record(monkeypatch, "conv_with_own_kernels")
    winograd_calls = _record(monkeypatch, "winograd_conv", argument=0)
    winograd_grad_calls = _record(monkeypatch, "winograd_weight_grad", argument=0)
    matmul_grad_calls = _record(monkeypatch, "weight_grad_as_matmul", argument=0)
    model, reference = _vgg11_pair()
    _assert_trains_like_torchvision(
        model, reference, torch.randn(2, 3, 64, 48).contiguous(memory_format=torch.channels_last)
    )
    # every convolution but the RGB input layer (at 64x48 no map is 2x2: block 5 is 4x3)
    assert calls == [
        (2, 64, 32, 24),
        (2, 128, 16, 12),
        (2, 256, 16, 12),
        (2, 256, 8, 6),
        (2, 512, 8, 6),
        (2, 512, 4, 3),
        (2, 512, 4, 3),
    ]
    # Winograd's forward (the input) and input gradient (the output's gradient, in backward order): 256 or more
    # input channels, even sides, and maps of at most the limit's pixels (16 x 12 just above the lower one)
    if winograd_max_map >= 16 * 12:
        forward, backward = calls[2:5], [(2, 512, 8, 6), (2, 512, 8, 6), (2, 256, 16, 12)]
    else:
        forward, backward = calls[3:5], [(2, 512, 8, 6), (2, 512, 8, 6)]
    assert winograd_calls == forward + backward
    # the weight gradient (the inputs, in backward order): Winograd's for 64 or more input channels and even
    # sides, at any map size; the matrix product's for the rest (block 5's 4x3 maps)
    assert winograd_grad_calls == calls[4::-1]
    assert matmul_grad_calls == calls[:4:-1]


@pytest.mark.parametrize(("winograd", "winograd_grad"), [(False, False), (True, False), (False, True)])
def test_conv_with_own_kernels_is_atens_convolution(winograd, winograd_grad):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 8, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(6, 5, 3, padding=1, dtype=torch.float64).to(memory_format=torch.channels_last)
    grad = torch.randn(2, 5, 8, 4, dtype=torch.float64)
    expected = torch.autograd.functional.vjp(
        lambda x, weight, bias: F.conv2d(x, weight, bias, padding=1), (x, conv.weight, conv.bias), grad
    )
    ours = torch.autograd.functional.vjp(
        lambda x, weight, bias: cpu_training._ConvWithOwnKernels.apply(x, weight, bias, winograd, winograd_grad),
        (x, conv.weight, conv.bias),
        grad,
    )
    torch.testing.assert_close(ours, expected, atol=1e-12, rtol=1e-12)  # the output, then each input's gradient


@pytest.mark.parametrize("case", ["avx2 fp32", "avx512 fp32", "no avx2", "autocast", "contiguous", "frozen"])
def test_fp32_channels_last_training_on_avx2_or_avx512_takes_vggnets_kernels(case, monkeypatch):
    capability = {"avx512 fp32": "AVX512", "no avx2": "DEFAULT"}.get(case, "AVX2")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    calls = _record(monkeypatch, "conv_with_own_kernels")
    winograd_grad_calls = _record(monkeypatch, "winograd_weight_grad", argument=0)
    memory_format = torch.contiguous_format if case == "contiguous" else torch.channels_last
    model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.25)
    model.to(memory_format=memory_format).train().features.requires_grad_(case != "frozen")
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=memory_format)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "autocast"):
        model(x).float().sum().backward()
    assert len(calls) == (5 if case.endswith("fp32") else 0)  # 16 or more input channels, maps above 2x2
    if case.endswith("fp32"):  # Winograd's weight gradient from 64 input channels (in backward order); 16 and 32 not
        assert [shape[1] for shape in winograd_grad_calls] == [128, 64, 64]


@pytest.mark.parametrize("min_map", [8 * 6, 8 * 6 + 1])
def test_bf16_training_takes_winograd_on_big_maps_with_torchvisions_gradients(min_map, monkeypatch):
    """Under bf16 autocast, the layers where Winograd pays in bf16 (256 or more input channels, even sides, maps of
    at least `BF16_WINOGRAD_MIN_MAP_PIXELS`) run by it, and the fp32 parameters get fp32 gradients that point as
    torchvision's fp32 ones do. (bf16's rounding compounds through a random network: oneDNN's bf16 kernels give cosine
    similarities of 0.965-1 here, Winograd's 0.89-1; the digits' main job trained to 0.9972 top-1 with Winograd
    on all its 256- and 512-channel layers, 0.9944 without.)"""
    monkeypatch.setattr(winograd, "bf16_winograd_pays", lambda: True)
    monkeypatch.setattr(cpu_training, "BF16_WINOGRAD_MIN_MAP_PIXELS", min_map)
    calls = _record(monkeypatch, "conv_with_own_kernels")
    model, reference = _vgg11_pair()
    x, direction = torch.randn(2, 3, 64, 48), torch.randn(2, 3)
    (reference(x) * direction).sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = model(x.contiguous(memory_format=torch.channels_last))
    (ours.float() * direction).sum().backward()
    # 256 or more input channels at 16x12 and 8x6; 4x3 has odd sides
    assert calls == [(2, 256, 16, 12), (2, 256, 8, 6), (2, 512, 8, 6)][: 3 if min_map == 8 * 6 else 1]
    for (name, mine), other in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert mine.grad.dtype == torch.float32, name
        assert F.cosine_similarity(mine.grad.flatten(), other.grad.flatten(), dim=0) > 0.8, name


def test_bf16_conv_with_own_kernels_is_the_convolution_up_to_bf16_rounding():
    """bf16 input and output gradient, fp32 weights: the output and the input gradient in bf16, the weight and bias
    gradients in fp32, each within 2e-2 of its largest value from float64 on the same inputs (Winograd's bf16
    rounding, `winograd.py`)."""
    torch.manual_seed(0)
    x = torch.randn(2, 256, 8, 6).relu().bfloat16().contiguous(memory_format=torch.channels_last).requires_grad_()
    conv = torch.nn.Conv2d(256, 128, 3, padding=1).to(memory_format=torch.channels_last)
    grad = torch.randn(2, 128, 8, 6).bfloat16()
    expected = torch.autograd.functional.vjp(
        lambda x, weight, bias: F.conv2d(x, weight, bias, padding=1),
        (x.detach().double(), conv.weight.double(), conv.bias.double()),
        grad.double(),
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = torch.autograd.functional.vjp(
            lambda x, weight, bias: cpu_training._ConvWithOwnKernels.apply(x, weight, bias, True, True),
            (x.detach(), conv.weight, conv.bias),
            grad,
        )
    assert [t.dtype for t in (ours[0], *ours[1])] == [torch.bfloat16, torch.bfloat16, torch.float32, torch.float32]
    for mine, exact in zip((ours[0], *ours[1]), (expected[0], *expected[1]), strict=True):
        assert (mine.double() - exact).abs().max() <= 2e-2 * exact.abs().max()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_torch_compile_leaves_the_convolutions_to_inductor_in_one_graph(precision, monkeypatch):
    """Under torch.compile vggnet's kernels (Python, and an autograd Function) step aside: they would break the
    graph at every layer, and recompile it for each shape until dynamo gives up."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")  # fp32 takes vggnet's kernels
    monkeypatch.setattr(winograd, "bf16_winograd_pays", lambda: True)
    monkeypatch.setattr(cpu_training, "BF16_WINOGRAD_MIN_MAP_PIXELS", 4 * 4)  # and bf16 Winograd's, at 32x32
    model = vggnet.create_model("vgg11", num_classes=3, head="compact").to(memory_format=torch.channels_last).train()

    def forward(x):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            return model(x)

    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    eager_calls = _record(monkeypatch, "conv_with_own_kernels")
    forward(x)
    assert len(eager_calls) == (5 if precision == "fp32" else 3)  # the kernels are taken without torch.compile
    assert torch._dynamo.explain(forward)(x).graph_break_count == 0
