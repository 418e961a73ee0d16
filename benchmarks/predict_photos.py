"""`vggnet predict` on a folder of JPEG photos, start-up included, against the script a torchvision user writes,
on the same files and weights: the end-to-end target of issue 15.

    python benchmarks/predict_photos.py                  # vgg16, 160 photo-like 1600x1200 JPEGs, 3 rounds
    python benchmarks/predict_photos.py --photos ~/Pictures --rounds 5 --format json

The photos: `--images` generated photo-like JPEGs (smooth colour gradients with grain, quality 90; about 0.65 MB
each at 1600x1200, as a camera's), or the images of a real folder (`--photos DIR`). The weights: a torchvision VGG
(`--model`) with seeded random weights, saved once as a plain torchvision state-dict file that both sides load.

Each case is a fresh process, timed from the outside from start to exit, so importing torch, loading the weights,
decoding and inference all count, as for a user who runs it:

- torchvision: a small script as the torchvision docs' classification recipe writes it (`python classify.py
  WEIGHTS PHOTO...`): the model from `torchvision.models`, `load_state_dict`, `eval`; PIL decoding with
  Resize(256), CenterCrop(224), ToTensor and Normalize; batches of 8 under `torch.no_grad()`, eager fp32; softmax
  top-5, one line per image.
- vggnet: `vggnet predict --model NAME --pretrained WEIGHTS DIR --device cpu --batch-size 8 --topk 5 --format json`,
  the command as a user runs it (precision auto; decoding in one process per spare core, up to 8, while the model
  runs); the headline.
- vggnet --workers 0: the same, decoding in the model's process (how much the decoding processes bring).

The rounds are interleaved (each round runs every case once, in this order), so that a change in the machine's
speed affects all cases alike, and the median of the rounds is reported; each case's CPU time (user + system) is
shown beside its wall-clock time. Every run must predict every photo (the outputs are read back and counted). The
target: the headline's wall-clock time at most a third of the torchvision script's (a ratio of at least 3.0).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torchvision
from startup import timed, vggnet_command
from workload import cpu_name, make_images

from vggnet.data import list_images
from vggnet.runtime import resolve_precision

TARGET = 3.0  # the torchvision script's wall-clock time over `vggnet predict`'s
BATCH_SIZE = 8
TOPK = 5
HEADLINE = "vggnet"
MODELS = [name for name in torchvision.models.list_models() if name.startswith("vgg")]

# The torchvision user's script, run as `python classify.py WEIGHTS PHOTO...`.
BASELINE = """
import sys

import torch
import torchvision
from PIL import Image
from torchvision import transforms

name, weights, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
model = torchvision.models.get_model(name)
model.load_state_dict(torch.load(weights))
model.eval()
preprocess = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])
with torch.no_grad():
    for start in range(0, len(paths), 8):
        batch_paths = paths[start:start + 8]
        batch = torch.stack([preprocess(Image.open(path).convert("RGB")) for path in batch_paths])
        probabilities = model(batch).softmax(dim=1)
        top_probabilities, top_classes = probabilities.topk(5, dim=1)
        for path, probs, classes in zip(batch_paths, top_probabilities.tolist(), top_classes.tolist()):
            print(path, " ".join(f"{index}:{prob:.4f}" for index, prob in zip(classes, probs)), sep="\\t")
"""


def image_size(text: str) -> tuple[int, int]:
    """`--size WxH` as (width, height)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be WIDTHxHEIGHT, such as 1600x1200; got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"--size must be positive, such as 1600x1200; got {text!r}")
    return width, height


def save_weights(name: str, folder: Path) -> Path:
    """Seeded random weights for torchvision's `name`, saved as a plain state dict."""
    torch.manual_seed(0)
    path = folder / f"{name}_random.pth"
    torch.save(torchvision.models.get_model(name).state_dict(), path)
    return path


def run_timed(command: list[str], output: Path) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds) of `command` in a fresh process, its standard output written to
    `output`; it must succeed."""
    with output.open("w") as stdout:
        return timed(command, stdout)


def predicted_paths(case: str, output: Path) -> list[str]:
    """The path of each prediction in a run's output, one per line or record (an error record fails the run)."""
    text = output.read_text()
    if case == "torchvision":
        return [line.split("\t")[0] for line in text.splitlines()]
    records = json.loads(text)
    failed = [record for record in records if "error" in record]
    if failed:
        raise RuntimeError(f"vggnet predict gave {len(failed)} error record(s), such as {failed[0]}")
    return [record["path"] for record in records]


def cases(model: str, weights: Path, folder: Path, photos: list[Path], script: Path) -> dict[str, list[str]]:
    """The command line of each case, in the order each round runs them (on the CPU, as the torchvision script)."""
    vggnet = [*vggnet_command(), "predict", "--model", model, "--pretrained", str(weights), str(folder),
              "--device", "cpu", "--batch-size", str(BATCH_SIZE), "--topk", str(TOPK), "--format", "json"]  # fmt: skip
    return {
        "torchvision": [sys.executable, str(script), model, str(weights), *map(str, photos)],
        HEADLINE: vggnet,
        "vggnet_workers0": [*vggnet, "--workers", "0"],
    }


def measure(args: argparse.Namespace, work: Path) -> dict:
    """Median wall-clock and CPU seconds of each case over `args.rounds` interleaved rounds."""
    if args.photos:
        folder = args.photos
    else:
        folder = work / "photos"
        folder.mkdir()
        make_images(folder, args.images, size=args.size)
    photos = list_images(folder)
    script = work / "classify.py"
    script.write_text(BASELINE)
    commands = cases(args.model, save_weights(args.model, work), folder, photos, script)
    expected = sorted(map(str, photos))
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    predicted = {}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for name, command in commands.items():
            output = work / f"{name}.out"
            samples[name].append(run_timed(command, output))
            paths = predicted_paths(name, output)
            if sorted(paths) != expected:
                raise RuntimeError(
                    f"{name} gave {len(paths)} predictions for {len(set(paths) & set(expected))} of the "
                    f"{len(expected)} photos; each should be predicted once"
                )
            predicted[name] = len(paths)
        load.append(os.getloadavg()[0])
    wall = {name: statistics.median(w for w, _ in values) for name, values in samples.items()}
    ratios = {name: wall["torchvision"] / seconds for name, seconds in wall.items() if name != "torchvision"}
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "load_average": max(load),  # the highest 1-minute load average seen, at the start and after each round
        "model": args.model,
        "images": len(photos),
        "photo_size": None if args.photos else f"{args.size[0]}x{args.size[1]}",
        "photos_mb": sum(photo.stat().st_size for photo in photos) / 1e6,
        "batch_size": BATCH_SIZE,
        "vggnet_precision": resolve_precision("auto", torch.device("cpu")),
        "rounds": args.rounds,
        "predicted": predicted,  # predictions in each case's output, one per photo (checked in every round)
        "wall_s": wall,
        "cpu_s": {name: statistics.median(c for _, c in values) for name, values in samples.items()},
        "images_per_s": {name: len(photos) / seconds for name, seconds in wall.items()},
        "ratios": ratios,
        "headline": HEADLINE,
        "ratio": ratios[HEADLINE],
        "target": TARGET,
        "pass": ratios[HEADLINE] >= TARGET,
    }


def render(measured: dict) -> str:
    photos = f"{measured['photo_size']} photo-like JPEGs" if measured["photo_size"] else "photos"
    lines = [
        f"{measured['cpu']} ({measured['cores']} cores, load average up to {measured['load_average']:.1f}); "
        f"{measured['model']} with seeded random weights; {measured['images']} {photos} "
        f"({measured['photos_mb']:.1f} MB); batch {measured['batch_size']}, top-{TOPK}; "
        f"vggnet precision auto = {measured['vggnet_precision']}",
        f"medians of {measured['rounds']} interleaved rounds, each case a fresh process timed from start to exit",
        "",
        f"  {'case':<24} {'wall':>9} {'cpu':>9} {'images/s':>9} {'ratio':>6}",
    ]
    labels = {"torchvision": "torchvision eager fp32", HEADLINE: "vggnet predict", "vggnet_workers0": "... --workers 0"}
    for name, label in labels.items():
        ratio = f"{measured['ratios'][name]:6.2f}" if name in measured["ratios"] else ""
        lines.append(
            f"  {label:<24} {measured['wall_s'][name]:7.1f} s {measured['cpu_s'][name]:7.1f} s "
            f"{measured['images_per_s'][name]:9.2f} {ratio}"
        )
    verdict = "PASS" if measured["pass"] else "MISS"
    lines += [
        "",
        f"headline, the command as a user runs it (no --workers): `vggnet predict` {measured['ratio']:.2f}x the "
        f"torchvision script (target >= {TARGET}): {verdict}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=160, help="photos to generate (160)")
    parser.add_argument("--size", type=image_size, default=(1600, 1200), help="generated photos' WxH (1600x1200)")
    parser.add_argument("--photos", type=Path, metavar="DIR", help="a folder of real photos instead (recursively)")
    parser.add_argument("--model", choices=MODELS, default="vgg16", help="a torchvision VGG (vgg16)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported (3)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.images < 1:
        parser.error(f"--images must be at least 1, got {args.images}")
    if args.photos:
        args.photos = args.photos.expanduser().resolve()
        if not args.photos.is_dir() or not list_images(args.photos):
            parser.error(f"--photos {args.photos} is not a folder of images; give a folder of JPEG photos")
    with tempfile.TemporaryDirectory() as work:
        measured = measure(args, Path(work))
    print(json.dumps(measured, indent=2) if args.format == "json" else render(measured))
    return 0 if measured["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
