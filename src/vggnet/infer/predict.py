"""Prediction on image files, folders (recursively) and globs, batched.

    vggnet predict --model runs/train/exp/best.pt photos/ 'more/*.jpg' --topk 3 --format json
    vggnet predict --model vgg16 --pretrained imagenet cat.jpg --save-viz out/

Every input gets a record: `{"path", "top": [{"class", "index", "prob"}, ...]}`, or `{"path", "error"}` for a
file that is missing or cannot be decoded; the other inputs still run.
"""

from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from ..choices import INFERENCE_BATCH_SIZE
from ..data import load_rgb
from ..models.vgg import VGG
from ..outputs import output_folder
from .batches import InputBatches
from .runner import InferenceRunner
from .source import LoadedModel, load_for_inference


class Predictor:
    """A model loaded once for many predictions, on the fast path by default.

    >>> import vggnet
    >>> from PIL import Image
    >>> Image.new("RGB", (64, 48), "tomato").save("tomato.png")
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)  # random weights
    >>> predictor = vggnet.Predictor(model, device="cpu")
    >>> [record] = predictor(["tomato.png"], topk=2)
    >>> record["path"], [sorted(top) for top in record["top"]]
    ('tomato.png', [['class', 'index', 'prob'], ['class', 'index', 'prob']])
    >>> predictor(["missing.png"])
    [{'path': 'missing.png', 'error': 'no such file or folder'}]
    >>> vggnet.Predictor("runs/train/exp/best.pt")(["cat.jpg", "photos/"], topk=3)  # doctest: +SKIP

    Args:
        model: A checkpoint path, a registry name with `pretrained`, or a loaded model.
        precision: `auto` (bf16 weights where the hardware runs bf16 natively, else fp32), `fp32`, `bf16`
            or `fp16`.
        compile: torch.compile the model first (a one-time cost; worth it for many images).
        batch_size: Images per forward pass.
        workers: Decoding processes (None: one per spare core, up to 8, for more than one batch of inputs).
    """

    def __init__(
        self,
        model: str | Path | VGG | LoadedModel,
        *,
        pretrained: str | Path | None = None,
        device: str = "auto",
        precision: str = "auto",
        compile: bool = False,
        batch_size: int = INFERENCE_BATCH_SIZE,
        workers: int | None = None,
    ) -> None:
        self.loaded = load_for_inference(model, pretrained, device, precision)
        self.runner = InferenceRunner(self.loaded, compile=compile)
        self.batch_size = batch_size
        self.workers = workers

    @property
    def classes(self) -> list[str]:
        return self.loaded.classes

    def __call__(
        self, inputs: list[str | Path], topk: int = 5, save_viz: str | Path | None = None, progress: bool = False
    ) -> list[dict]:
        """One record per input (see the module docstring), in input order; `save_viz` also writes each image
        with its top predictions drawn on it into that folder."""
        if topk < 1:
            raise ValueError(f"--topk must be at least 1, got {topk}")
        folder = output_folder(save_viz, "--save-viz") if save_viz is not None else None  # before the inference
        batches = InputBatches(self.loaded, inputs, self.batch_size, self.workers, progress, "predict")
        records: dict[int, dict] = {}
        for positions, images in batches:
            for position, top in zip(positions, top_classes(self.runner(images), self.classes, topk), strict=True):
                records[position] = {"path": batches.paths[position], "top": top}
        for position, reason in batches.errors.items():
            records[position] = {"path": batches.paths[position], "error": reason}
        ordered = [records[position] for position in range(len(batches.paths))]
        if folder is not None:
            save_visualisations([r for r in ordered if "top" in r], folder)
        return ordered


def top_classes(logits: torch.Tensor, classes: list[str], topk: int) -> list[list[dict]]:
    """For each row of `logits` (n, classes), its `topk` classes, most probable first, as records' `top` entries
    (`{"class", "index", "prob"}`); `topk` is capped at the number of classes.

    >>> import torch
    >>> [first, second] = top_classes(torch.tensor([[0.0, 2.0, 0.0]]), ["ant", "bee", "cat"], topk=2)[0]
    >>> first["class"], first["index"], round(first["prob"], 4), second["class"]
    ('bee', 1, 0.787, 'ant')
    """
    probs, indices = logits.float().softmax(dim=1).topk(min(topk, len(classes)), dim=1)
    return [
        [{"class": classes[i], "index": i, "prob": p} for p, i in zip(row_probs, row_indices, strict=True)]
        for row_probs, row_indices in zip(probs.tolist(), indices.tolist(), strict=True)
    ]


def predict(
    model: str | Path | VGG | LoadedModel,
    inputs: list[str | Path],
    *,
    pretrained: str | Path | None = None,
    topk: int = 5,
    batch_size: int = INFERENCE_BATCH_SIZE,
    workers: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    compile: bool = False,
    save_viz: str | Path | None = None,
    progress: bool = False,
) -> list[dict]:
    """Classify images once: `Predictor(model, ...)(inputs, topk, save_viz, progress)` (see `Predictor`).

    >>> import vggnet
    >>> from PIL import Image
    >>> Image.new("RGB", (64, 48), "tomato").save("tomato.png")
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> model.pretrained_cfg = {"classes": ["ant", "bee", "cat"], "preprocess": vggnet.Preprocess(32, 32).to_dict()}
    >>> [record] = vggnet.predict(model, ["tomato.png"], topk=1, device="cpu")
    >>> record["top"][0]["class"] in ("ant", "bee", "cat")
    True
    """
    predictor = Predictor(
        model, pretrained=pretrained, device=device, precision=precision, compile=compile, batch_size=batch_size,
        workers=workers,
    )  # fmt: skip
    return predictor(inputs, topk=topk, save_viz=save_viz, progress=progress)


def save_visualisations(records: list[dict], folder: Path) -> list[Path]:
    """Write each image with its top predictions drawn in a box at the top left, as `<folder>/<name>` in the
    input's own format (`cat.jpg` gives a JPEG `cat.jpg`, `digit.png` a PNG); an input with no suffix or in a
    format that Pillow reads but cannot write (such as `.psd`) is written as PNG (`<stem>.png`). Names that two
    inputs share get a number (`cat_2.jpg`)."""
    folder.mkdir(parents=True, exist_ok=True)
    writable = {suffix for suffix, format in Image.registered_extensions().items() if format in Image.SAVE}
    written, taken = [], set()
    for record in records:
        image = load_rgb(record["path"])
        scale = max(1.0, 256 / max(image.size))  # small images are enlarged so the text stays legible
        if scale > 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.NEAREST)
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default(size=max(12, image.height // 30))
        lines = [f"{t['class']} {t['prob']:.1%}" for t in record["top"]]
        box = draw.multiline_textbbox((4, 4), "\n".join(lines), font=font)
        draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(0, 0, 0))
        draw.multiline_text((4, 4), "\n".join(lines), fill=(255, 255, 255), font=font)
        source = Path(record["path"])
        suffix = source.suffix if source.suffix.lower() in writable else ".png"
        candidate, number = source.stem, 1
        while f"{candidate}{suffix}".lower() in taken:
            number += 1
            candidate = f"{source.stem}_{number}"
        taken.add(f"{candidate}{suffix}".lower())
        path = folder / f"{candidate}{suffix}"
        image.save(path, quality=92)  # quality: JPEG's and WebP's; the other formats ignore it
        written.append(path)
    return written
