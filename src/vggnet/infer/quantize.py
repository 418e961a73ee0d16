"""Post-training int8 quantization, calibrated on real images (PT2E with torchao's X86InductorQuantizer).

    vggnet quantize --model runs/train/exp/best.pt --calib data/train [--val data/val] [--out best.int8.pt]
    vggnet predict --model runs/train/exp/best.int8.pt photos/

Observers record activation ranges on up to `calib_images` images. The `.int8.pt` file holds the fp32 weights,
those ranges, the classes and the preprocessing, all tensors and plain values (loaded with weights_only=True);
`predict` and `eval` take it as `--model` and rebuild the int8 graph, compiled on first use (inductor's int8
kernels for x86 CPUs). The report compares top-1 of fp32 and int8 on a validation folder. The file is written last,
once calibration and the comparison have succeeded: a failure leaves nothing behind.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..atomic import atomic_save
from ..data import ImageListDataset, TableColumns, collate_skipping_failures, list_images
from ..models.int8 import observer_state, prepare_for_calibration, quantization_api
from ..models.loading import QUANTIZED_FORMAT
from ..models.vgg import VGG
from .evaluate import evaluate, evaluation_set
from .source import load_for_inference, output_path, quantized_model

QUANTIZED_SUFFIX = ".int8.pt"


@dataclass
class QuantizeResult:
    """What `quantize` wrote, on how many calibration images, and (with a validation folder) fp32's and int8's
    top-1 on it.

    >>> from pathlib import Path
    >>> from vggnet import QuantizeResult
    >>> round(QuantizeResult(Path("best.int8.pt"), 256, fp32_top1=0.912, int8_top1=0.908).top1_change, 6)
    -0.004
    """

    path: Path
    calibration_images: int
    fp32_top1: float | None = None
    int8_top1: float | None = None
    validation_images: int = 0

    @property
    def top1_change(self) -> float | None:
        return None if self.fp32_top1 is None else self.int8_top1 - self.fp32_top1


def quantize(
    model: str | Path | VGG,
    calib: str | Path,
    *,
    pretrained: str | Path | None = None,
    val: str | Path | None = None,
    out: str | Path | None = None,
    calib_images: int = 256,
    batch_size: int = 32,
) -> QuantizeResult:
    """Quantize a model to int8 with images from `calib`, save it, and (with `val`) report the top-1 change.

    >>> import os, vggnet
    >>> from PIL import Image
    >>> os.makedirs("calib")
    >>> for colour in ("tomato", "teal", "gold"):
    ...     Image.new("RGB", (40, 30), colour).save(f"calib/{colour}.png")
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> model.pretrained_cfg = {"classes": ["ant", "bee", "cat"], "preprocess": vggnet.Preprocess(32, 32).to_dict()}
    >>> result = vggnet.quantize(model, "calib", out="tiny.int8.pt")
    >>> str(result.path), result.calibration_images
    ('tiny.int8.pt', 3)
    >>> vggnet.predict("tiny.int8.pt", ["calib"], topk=1)  # doctest: +SKIP

    Args:
        model: A checkpoint path, a registry name with `pretrained`, or a VGG (which is not changed).
        calib: A folder of representative images (searched recursively; labels are not needed).
        val: A labelled folder (as `vggnet eval` takes) on which to compare fp32 and int8 top-1; checked (it exists,
            and its classes are the model's) before calibration.
        out: Output path (default: beside the checkpoint, `<name>.int8.pt`; an existing file there is not
            overwritten, and is reported before the model loads).
        calib_images: At most this many calibration images, spread evenly over the folder.

    Raises:
        ValueError: the output path is taken, `calib` holds no readable image, or `val` is missing or labelled with
            other classes than the model's.
        MissingExtra: torchao is not installed.
    """
    # What can fail without the model is checked before loading it.
    path = output_path(out, model, QUANTIZED_SUFFIX, "quantize")
    quantization_api()
    paths = list_images(Path(calib).expanduser()) if Path(calib).expanduser().is_dir() else []
    if not paths:
        raise ValueError(f"--calib {calib} holds no images; pass a folder of images like the ones the model will see")
    if val is not None and not Path(val).expanduser().exists():
        raise ValueError(
            f"--val {val} does not exist; pass a labelled folder of class sub-folders (or a table), as `vggnet eval "
            f"--data` takes"
        )
    loaded = load_for_inference(model, pretrained, device="cpu", precision="fp32")
    if val is not None:
        evaluation_set(loaded, val, TableColumns())  # its classes must be the model's: told before the calibration runs
    network = loaded.model
    step = max(1, len(paths) // calib_images)
    samples = [(path, 0) for path in paths[::step][:calib_images]]
    loader = DataLoader(
        ImageListDataset(samples, loaded.preprocess.transform(), loaded.preprocess.decode_size),
        batch_size=batch_size,
        collate_fn=collate_skipping_failures,
    )
    prepared = prepare_for_calibration(network, loaded.preprocess.img_size)
    seen = 0
    with torch.no_grad():
        for images, _labels, _dropped in loader:
            if len(images):
                prepared(images)
                seen += len(images)
    if not seen:
        raise ValueError(f"none of the calibration images in {calib} could be read")
    content = {
        "format": QUANTIZED_FORMAT,
        "version": 1,
        "scheme": "pt2e-x86-inductor",
        "model": {"name": network.model_name, "kwargs": network.model_kwargs},
        "state_dict": {
            k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in network.state_dict().items()
        },
        "observers": observer_state(prepared, network),
        "classes": loaded.classes,
        "preprocess": loaded.preprocess.to_dict(),
        "source": loaded.source,
    }
    result = QuantizeResult(path, seen)
    if val is not None:
        # The int8 model is rebuilt from what is about to be saved, as `--model` rebuilds it from the file.
        int8 = quantized_model(content["state_dict"], content, path, torch.device("cpu"))
        exact, quantized = evaluate(loaded, val, precision="fp32"), evaluate(int8, val)
        result.fp32_top1, result.int8_top1 = exact["top1"], quantized["top1"]
        result.validation_images = exact["num_images"]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(content, path)
    return result
