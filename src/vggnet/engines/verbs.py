"""The batch verbs: `stream_predict` and `stream_embed`, a task on every input into Parquet shards, run by the
engine chosen: `local` (this process, `local.stream`) or `ray` (a Ray Data pipeline, `ray_data.stream_on_ray`).

    vggnet embed --model runs/train/exp/best.pt photos/ --out photos.parquet
    vggnet predict --model runs/train/exp/best.pt --list crawl.parquet --path-column url_path --out labels.parquet
    vggnet embed --model runs/train/exp/best.pt --list paths.txt --out photos.parquet --engine ray --num-workers 4
"""

from pathlib import Path

from ..choices import ENGINES
from ..infer.source import LoadedModel
from ..models.vgg import VGG
from .inputs import Entry, collect_inputs
from .job import StreamResult
from .tasks import TaskSpec


def stream_predict(
    model: str | Path | VGG | LoadedModel,
    inputs: list[str | Path],
    out: str | Path,
    *,
    lists: list[str | Path] = (),
    path_column: str | None = None,
    image_root: str | Path | None = None,
    topk: int = 5,
    pretrained: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    engine: str = "local",
    **options,
) -> StreamResult:
    """`predict` into Parquet shards: one row per input of `inputs` (files, folders, globs) and of the `lists`
    (read with `path_column` and `image_root`: see `inputs.collect_inputs`), with `top_class`, `top_index` and
    `top_prob`; `options` as the `engine` takes them (`local.stream`, `ray_data.stream_on_ray`).

    >>> import vggnet
    >>> from PIL import Image
    >>> from vggnet.engines import stream_predict
    >>> Image.new("RGB", (64, 48), "tomato").save("tomato.png")
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> result = stream_predict(model, ["tomato.png", "gone.png"], "labels.parquet", topk=2, device="cpu")
    >>> result.rows, result.errors, result.shards
    (2, 1, 1)
    """
    spec = TaskSpec("predict", model, pretrained, precision, {"topk": topk})
    entries = collect_inputs(inputs, lists, path_column, image_root)
    return run(spec, entries, out, device=device, engine=engine, **options)


def stream_embed(
    model: str | Path | VGG | LoadedModel,
    inputs: list[str | Path],
    out: str | Path,
    *,
    lists: list[str | Path] = (),
    path_column: str | None = None,
    image_root: str | Path | None = None,
    layer: str | None = None,
    normalize: bool = False,
    pretrained: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    engine: str = "local",
    **options,
) -> StreamResult:
    """`embed` into Parquet shards: one row per input with a fixed-size float32 `embedding` (`layer` and `dim` in
    the files' metadata); inputs, `engine` and `options` as `stream_predict` takes them."""
    spec = TaskSpec("embed", model, pretrained, precision, {"layer": layer, "normalize": normalize})
    entries = collect_inputs(inputs, lists, path_column, image_root)
    return run(spec, entries, out, device=device, engine=engine, **options)


def run(spec: TaskSpec, entries: list[Entry], out: str | Path, *, device: str, engine: str, **options) -> StreamResult:
    """The task `spec` on every entry, by `engine`.

    Raises:
        ValueError: an unknown engine, or what the engine raises for a bad setting.
    """
    if engine == "local":
        from .local import stream

        return stream(spec.build(device), entries, out, **options)
    if engine == "ray":
        from .ray_data import stream_on_ray

        return stream_on_ray(spec, entries, out, device=device, **options)
    raise ValueError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}")
