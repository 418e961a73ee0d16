"""The models a server holds: each loaded once, on the fast path, with its batcher and its one worker thread."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from fastapi import HTTPException, Request
from PIL import Image
from starlette.concurrency import run_in_threadpool

from ..data import UnreadableImageError, decode_image
from ..infer.runner import InferenceRunner
from ..infer.source import LoadedModel
from .batcher import DynamicBatcher, QueueFull
from .settings import ServeSettings
from .telemetry import Telemetry

# The most pixels an upload may decode to (after a JPEG's reduced scale): where PIL starts to warn of a
# decompression bomb (89.5 million). Between it and PIL's refusal (twice that), a PNG of a few hundred kB decodes to
# 270-540 MB, and a few at once would take the server's memory.
MAX_DECODED_PIXELS = Image.MAX_IMAGE_PIXELS


class ServedModel:
    """One model of the server: its `LoadedModel`, the `InferenceRunner` that `predict` uses, the eval transform
    and a `DynamicBatcher` running in the model's own worker thread (Grad-CAM runs there too, between batches)."""

    def __init__(self, name: str, loaded: LoadedModel, settings: ServeSettings, telemetry: Telemetry) -> None:
        self.name, self.loaded = name, loaded
        self.runner = InferenceRunner(loaded)
        self.transform = loaded.preprocess.transform()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"vggnet-{name}")
        self.batcher = DynamicBatcher(
            lambda images: self.runner(images).cpu(),
            self.executor,
            max_batch_size=settings.max_batch_size,
            max_delay_s=settings.max_delay_ms / 1000,
            max_queue=settings.max_queue,
            on_batch=telemetry.batch_size.labels(name).observe,
        )
        telemetry.queue_depth.labels(name).set_function(lambda: self.batcher.depth)
        self.ready = False

    @property
    def img_size(self) -> int:
        return self.loaded.preprocess.img_size

    @property
    def classes(self) -> list[str]:
        return self.loaded.classes

    def describe(self, default: bool) -> dict:
        """What `GET /v1/models` says of this model."""
        return {
            "name": self.name,
            "classes": self.classes,
            "img_size": self.img_size,
            "precision": self.loaded.precision,
            "source": self.loaded.source,
            "default": default,
        }

    async def warm_up(self) -> float:
        """Run one real batch (of `--max-batch-size` blank images) and start batching; returns the seconds taken."""
        started = time.perf_counter()
        Image.init()  # PIL imports its format plugins once; a first upload that is not an image would wait for it
        blank = torch.zeros(self.batcher.max_batch_size, 3, self.img_size, self.img_size)
        await asyncio.get_running_loop().run_in_executor(self.executor, self.runner, blank)
        self.batcher.start()
        self.ready = True
        return time.perf_counter() - started

    async def images(self, uploads: list[tuple[str, bytes]]) -> torch.Tensor:
        """The uploads (name, file bytes) decoded and preprocessed exactly as `vggnet predict` does, as one batch
        (in a thread, off the event loop).

        Raises:
            HTTPException: 400 naming every upload that is not a readable image, or when there are none.
        """
        self.batcher.expect(len(uploads))  # a batch that is gathering waits for these
        try:
            return torch.stack(await self.decoded(uploads, preprocess=True))
        finally:
            self.batcher.expect(-len(uploads))  # they go to `logits` next, or never come

    async def decoded(self, uploads: list[tuple[str, bytes]], preprocess: bool = False) -> list:
        """The uploads as RGB images (or, with `preprocess`, as the network's input tensors); errors as `images`."""
        if not uploads:
            raise HTTPException(
                400, "the request has no image; send files as multipart form data or one image as the body"
            )
        return await run_in_threadpool(self._decode, uploads, preprocess)

    def _decode(self, uploads: list[tuple[str, bytes]], preprocess: bool) -> list:
        decoded, problems = [], []
        for name, data in uploads:
            try:
                image = decode_image(data, name, self.loaded.preprocess.decode_size, MAX_DECODED_PIXELS)
            except UnreadableImageError as error:
                problems.append(str(error))
                continue
            decoded.append(self.transform(image) if preprocess else image)
        if problems:
            raise HTTPException(400, "; ".join(problems))
        return decoded

    async def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The model's logits for preprocessed `images` (n, 3, S, S), batched with whatever else is waiting.

        Raises:
            HTTPException: 503 with Retry-After when the queue is full; 413 for more images than it can ever hold.
        """
        if len(images) > self.batcher.max_queue:
            raise HTTPException(
                413, f"the request holds {len(images)} images; the server takes {self.batcher.max_queue} at most at "
                "once (--max-queue): send them in several requests"
            )  # fmt: skip
        try:
            return await self.batcher.submit(images)
        except QueueFull as error:
            raise HTTPException(503, str(error), headers={"Retry-After": "1"}) from None

    async def run_exclusive(self, function, *args):
        """`function(*args)` in the model's worker thread, between batches (for Grad-CAM, which needs gradients)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def close(self) -> None:
        await self.batcher.stop()
        self.executor.shutdown(wait=True)


class ModelServer:
    """The served models by name (the first is the default), readiness, and draining at shutdown."""

    def __init__(
        self,
        models: dict[str, LoadedModel],
        settings: ServeSettings,
        telemetry: Telemetry,
        load_seconds: dict[str, float] | None = None,
    ) -> None:
        if not models:
            raise ValueError("nothing to serve: pass at least one --model")
        self.settings, self.telemetry = settings, telemetry
        self.models = {name: ServedModel(name, loaded, settings, telemetry) for name, loaded in models.items()}
        self.default = next(iter(self.models))
        self.load_seconds = dict(load_seconds or {})
        self.draining = False

    def get(self, name: str | None = None) -> ServedModel:
        """The model `name` (the default for None).

        Raises:
            HTTPException: 404 naming the models served.
        """
        name = self.default if name is None else name
        if name not in self.models:
            raise HTTPException(404, f"unknown model {name!r}; served: {', '.join(self.models)}")
        return self.models[name]

    @property
    def ready(self) -> bool:
        return not self.draining and all(model.ready for model in self.models.values())

    def not_ready_reason(self) -> str:
        if self.draining:
            return "the server is shutting down"
        warming = [name for name, model in self.models.items() if not model.ready]
        return f"still warming up: {', '.join(warming)}"

    async def start(self) -> None:
        for name, model in self.models.items():
            seconds = self.load_seconds.get(name, 0.0) + await model.warm_up()
            self.telemetry.load_seconds.labels(name).set(seconds)

    def drain(self) -> None:
        """Turn readiness off and stop batches waiting for company: what remains runs at once."""
        self.draining = True
        for model in self.models.values():
            model.batcher.flush()

    async def close(self) -> None:
        for model in self.models.values():
            await model.close()


def server_of(request: Request) -> ModelServer:
    """The `ModelServer` of the app answering `request` (`create_app` keeps it in the app's state)."""
    return request.app.state.server
