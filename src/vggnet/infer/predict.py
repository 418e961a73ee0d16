"""Prediction on image files, folders (recursively) and globs, batched.

    vggnet predict --model runs/train/exp/best.pt photos/ 'more/*.jpg' --topk 3 --format json
    vggnet predict --model vgg16 --pretrained imagenet cat.jpg --save-viz out/

Every input gets a record: `{"path", "top": [{"class", "index", "prob"}, ...]}`, or `{"path", "error"}` for a
file that is missing or cannot be decoded; the other inputs still run.
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..data import load_rgb
from ..models.vgg import VGG
from .batches import InputBatches
from .source import LoadedModel, load_for_inference


def predict(
    model: str | Path | VGG | LoadedModel,
    inputs: list[str | Path],
    *,
    pretrained: str | Path | None = None,
    topk: int = 5,
    batch_size: int = 32,
    workers: int = 0,
    device: str = "auto",
    precision: str = "fp32",
    save_viz: str | Path | None = None,
    progress: bool = False,
) -> list[dict]:
    """Classify images and return one record per input (see the module docstring), in input order.

    Args:
        model: A checkpoint path, a registry name with `pretrained`, or a loaded model.
        inputs: Files, folders and glob patterns.
        topk: Predictions per image (at most the number of classes).
        save_viz: A folder to write each image with its top predictions drawn on it.
        progress: Show a progress bar over the batches.
    """
    if topk < 1:
        raise ValueError(f"--topk must be at least 1, got {topk}")
    loaded = model if isinstance(model, LoadedModel) else load_for_inference(model, pretrained, device, precision)
    batches = InputBatches(loaded, inputs, batch_size, workers, progress, "predict")
    k = min(topk, len(loaded.classes))
    records: dict[int, dict] = {}
    for positions, images in batches:
        probs, classes = batches.forward(images).float().softmax(dim=1).topk(k, dim=1)
        for position, row_probs, row_classes in zip(positions, probs.tolist(), classes.tolist(), strict=True):
            top = [
                {"class": loaded.classes[c], "index": c, "prob": p} for p, c in zip(row_probs, row_classes, strict=True)
            ]
            records[position] = {"path": batches.paths[position], "top": top}
    for position, reason in batches.errors.items():
        records[position] = {"path": batches.paths[position], "error": reason}
    records = [records[position] for position in range(len(batches.paths))]
    if save_viz is not None:
        save_visualisations([r for r in records if "top" in r], Path(save_viz))
    return records


def save_visualisations(records: list[dict], folder: Path) -> list[Path]:
    """Write each image with its top predictions drawn in a box at the top left, as `<folder>/<name>.jpg`."""
    folder.mkdir(parents=True, exist_ok=True)
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
        name = Path(record["path"]).stem
        candidate, number = name, 1
        while candidate in taken:
            number += 1
            candidate = f"{name}_{number}"
        taken.add(candidate)
        path = folder / f"{candidate}.jpg"
        image.save(path, quality=92)
        written.append(path)
    return written
