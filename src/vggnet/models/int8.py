"""Int8 VGG for x86 CPUs: PT2E quantization with torchao's X86InductorQuantizer.

A quantized model is stored as what rebuilds it exactly: the fp32 weights and the calibrated observers' buffers
(activation and weight ranges), all tensors, so that loading runs no pickled code. `int8_module` re-exports the
model, re-attaches the observers and converts: the same int8 graph as right after calibration.
"""

import torch

from ..extras import require
from .vgg import MIN_INPUT_SIZE, VGG


def quantization_api():
    """torchao's PT2E functions and a configured X86InductorQuantizer: (prepare_pt2e, convert_pt2e, quantizer).

    Raises:
        MissingExtra: torchao is not installed, or is too old to have PT2E quantization.
    """
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "quantize", "int8 quantization")
    x86 = require("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer", "quantize", "int8 quantization")
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
    return pt2e.prepare_pt2e, pt2e.convert_pt2e, quantizer


def prepare_for_calibration(model: VGG, size: int) -> torch.nn.Module:
    """`model` exported (any batch size, `size` x `size` inputs) with observers inserted; run images through it to
    calibrate. `model` is put in eval mode."""
    prepare_pt2e, _, quantizer = quantization_api()
    side = max(size, MIN_INPUT_SIZE)
    example = torch.randn(2, model.in_chans, side, side)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    with torch.no_grad():
        return prepare_pt2e(torch.export.export(model.eval(), (example,), dynamic_shapes=dynamic).module(), quantizer)


def observer_state(prepared: torch.nn.Module, model: VGG) -> dict[str, torch.Tensor]:
    """The calibrated observers' buffers of a prepared model (everything but the model's own tensors)."""
    own = model.state_dict()
    return {key: value.detach().clone() for key, value in prepared.state_dict().items() if key not in own}


def int8_module(model: VGG, observers: dict[str, torch.Tensor], size: int) -> torch.nn.Module:
    """The int8 graph of `model` with the given calibrated observers.

    Raises:
        ValueError: the observers do not fit this model's graph (another model, or another PyTorch/torchao).
    """
    _, convert_pt2e, _ = quantization_api()
    prepared = prepare_for_calibration(model, size)
    expected = set(observer_state(prepared, model))
    if set(observers) != expected:
        raise ValueError(
            f"the quantization ranges do not fit this model's graph ({len(set(observers) ^ expected)} entries "
            f"differ); quantize the fp32 checkpoint again with this version of PyTorch and torchao"
        )
    with torch.no_grad():
        for key, value in observers.items():
            buffer = prepared.get_buffer(key)
            buffer.resize_(value.shape)
            buffer.copy_(value)
        return convert_pt2e(prepared)
