"""Post-training int8 quantization, calibrated on real images (PT2E with torchao's X86InductorQuantizer).

    vggnet quantize --model runs/train/exp/best.pt --calib data/train [--val data/val] [--out best.int8.pt2]
    vggnet predict --model runs/train/exp/best.int8.pt2 photos/

The model is exported with torch.export, observers record activation ranges on up to `calib_images` images,
and the result is saved as an ExportedProgram (`.pt2`) with the classes and preprocessing in a `vggnet.json`
entry, so that `predict` and `eval` take it as `--model`. It runs on x86 CPUs through torch.compile (inductor's
int8 kernels), compiled when loaded. The report compares top-1 of fp32 and int8 on the validation folder.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..data import ImageListDataset, build_transform, collate_skipping_failures, list_images
from ..models.vgg import MIN_INPUT_SIZE
from .source import METADATA_FILE, QUANTIZED_FORMAT, load_for_inference

QUANTIZED_SUFFIX = ".int8.pt2"


@dataclass
class QuantizeResult:
    path: Path
    calibration_images: int
    fp32_top1: float | None = None
    int8_top1: float | None = None
    validation_images: int = 0

    @property
    def top1_change(self) -> float | None:
        return None if self.fp32_top1 is None else self.int8_top1 - self.fp32_top1


def _quantization_api():
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    except ImportError as error:
        raise ValueError("int8 quantization needs torchao: pip install 'vggnet[quantize]'") from error
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
    return prepare_pt2e, convert_pt2e, quantizer


def quantize(
    model: str | Path,
    calib: str | Path,
    *,
    pretrained: str | Path | None = None,
    val: str | Path | None = None,
    out: str | Path | None = None,
    calib_images: int = 256,
    batch_size: int = 32,
) -> QuantizeResult:
    """Quantize a model to int8 with images from `calib`, save it, and (with `val`) report the top-1 change.

    Args:
        model: A checkpoint path, or a registry name with `pretrained`.
        calib: A folder of representative images (searched recursively; labels are not needed).
        val: A labelled folder (as `vggnet eval` takes) on which to compare fp32 and int8 top-1.
        out: Output path (default: beside the checkpoint, `<name>.int8.pt2`).
        calib_images: At most this many calibration images, spread evenly over the folder.
    """
    loaded = load_for_inference(model, pretrained, device="cpu", precision="fp32")
    network = loaded.model.to(memory_format=torch.contiguous_format).eval()
    paths = list_images(Path(calib).expanduser()) if Path(calib).expanduser().is_dir() else []
    if not paths:
        raise ValueError(f"--calib {calib} holds no images; pass a folder of images like the ones the model will see")
    step = max(1, len(paths) // calib_images)
    samples = [(path, 0) for path in paths[::step][:calib_images]]
    loader = DataLoader(
        ImageListDataset(samples, build_transform(loaded.preprocess)),
        batch_size=batch_size,
        collate_fn=collate_skipping_failures,
    )
    batches = [images for images, _labels, _dropped in loader if len(images)]
    if not batches:
        raise ValueError(f"none of the calibration images in {calib} could be read")
    program = quantize_module(network, batches, loaded.preprocess["img_size"])
    seen = sum(len(images) for images in batches)
    path = _output_path(out, model, network)
    metadata = {
        "format": QUANTIZED_FORMAT,
        "model": {"name": network.model_name, "kwargs": network.model_kwargs},
        "classes": loaded.classes,
        "preprocess": loaded.preprocess,
        "source": loaded.source,
    }
    torch.export.save(program, str(path), extra_files={METADATA_FILE: json.dumps(metadata)})
    result = QuantizeResult(path, seen)
    if val is not None:
        from .evaluate import evaluate

        exact = evaluate(loaded, val, precision="fp32")
        quantized = evaluate(path, val)
        result.fp32_top1, result.int8_top1 = exact["top1"], quantized["top1"]
        result.validation_images = exact["num_images"]
    return result


def quantize_module(network: torch.nn.Module, calibration: list[torch.Tensor], size: int):
    """The int8 ExportedProgram of `network` (any batch size, `size` x `size` inputs), its activation ranges
    observed on the `calibration` batches (preprocessed float32 images)."""
    prepare_pt2e, convert_pt2e, quantizer = _quantization_api()
    example = torch.randn(2, network.in_chans, max(size, MIN_INPUT_SIZE), max(size, MIN_INPUT_SIZE))
    dynamic = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    with torch.no_grad():
        prepared = prepare_pt2e(torch.export.export(network, (example,), dynamic_shapes=dynamic).module(), quantizer)
        for images in calibration:
            prepared(images)
        return torch.export.export(convert_pt2e(prepared), (example,), dynamic_shapes=dynamic)


def _output_path(out, model, network) -> Path:
    if out is not None:
        path = Path(out).expanduser()
    elif Path(str(model)).is_file():
        source = Path(str(model))
        path = source.with_name(source.stem + QUANTIZED_SUFFIX)
    else:
        path = Path("runs/quantize") / f"{network.model_name}{QUANTIZED_SUFFIX}"
    if out is None and path.exists():
        raise ValueError(f"{path} already exists; pass --out to choose where to write (or remove the old file)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
