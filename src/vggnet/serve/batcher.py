"""Dynamic batching: images from requests that arrive together run through the model as one batch.

A batch holds at most `max_batch_size` images. It waits for company only while more images are on their way (their
requests are being decoded: `expect`), and then at most `max_delay_s`: a lone request runs at once, and under load
the requests that arrive together fill the batch. While a batch computes, the next one gathers. The model runs in
one worker thread, off the event loop, so that health checks and metrics answer while it computes. Images beyond
`max_queue` waiting are refused (`QueueFull`) rather than queued without end.
"""

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

import torch


class QueueFull(Exception):
    """More images are waiting than the server takes; the client should retry shortly."""


class DynamicBatcher:
    """Batches the images of concurrent `submit` calls for `run` (a batch (n, 3, H, W) -> outputs (n, ...)).

    >>> import asyncio, torch
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> async def main():
    ...     batcher = DynamicBatcher(lambda x: x.sum(dim=(1, 2, 3)), ThreadPoolExecutor(1), max_batch_size=4,
    ...                              max_delay_s=0.05, max_queue=16, on_batch=lambda n: print("batch of", n))
    ...     batcher.start()
    ...     batcher.expect(3)  # three images on their way: the first waits (up to 50 ms) for the other two
    ...     async def request():
    ...         batcher.expect(-1)
    ...         return await batcher.submit(torch.ones(1, 3, 2, 2))
    ...     results = await asyncio.gather(*(request() for _ in range(3)))
    ...     await batcher.stop()
    ...     return [r.tolist() for r in results]
    >>> asyncio.run(main())
    batch of 3
    [[12.0], [12.0], [12.0]]

    Args:
        run: The model call, made in `executor`'s thread.
        executor: Where `run` runs (one thread per model: batches never compete for the cores).
        max_batch_size: Images per batch at most. A request with more is split into several batches.
        max_delay_s: How long a batch may wait for images on their way.
        max_queue: Images that may wait at once.
        on_batch: Called with each batch's size (for metrics).
    """

    def __init__(
        self,
        run: Callable[[torch.Tensor], torch.Tensor],
        executor: Executor,
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._run, self._executor, self._on_batch = run, executor, on_batch
        self.max_batch_size, self.max_delay_s, self.max_queue = max_batch_size, max_delay_s, max_queue
        self._waiting: deque[tuple[torch.Tensor, asyncio.Future]] = deque()
        self._waiting_images = 0
        self._expected = 0
        self._arrived = asyncio.Event()
        self._flushing = self._closing = False
        self._task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        """Images waiting for a batch (not counting the batch that is computing)."""
        return self._waiting_images

    def expect(self, count: int) -> None:
        """Say that `count` more images are on their way (a request decoding them), or with a negative count that
        they have arrived or never will: a batch waits for company only while some are on their way."""
        self._expected += count
        if count < 0:
            self._arrived.set()  # a batch waiting for them looks again

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    def flush(self) -> None:
        """Stop waiting for company: from now on every batch runs as soon as the model is free (when draining)."""
        self._flushing = True
        self._arrived.set()

    async def stop(self) -> None:
        """Run what is waiting (at once, without waiting for company), then stop; later `submit` calls fail."""
        self._closing = True
        self.flush()
        if self._task is not None:
            await self._task
        for _, future in self._waiting:  # never started (the server stopped while warming up)
            if not future.done():
                future.set_exception(RuntimeError("the server stopped before this request ran"))
        self._waiting.clear()

    async def submit(self, images: torch.Tensor) -> torch.Tensor:
        """The outputs for `images` (n, 3, H, W), in order, once their batches have run.

        Raises:
            QueueFull: `max_queue` images are already waiting, counting these.
        """
        if self._closing:
            raise QueueFull("the server is shutting down; retry on another replica, or when it is back")
        if self._waiting_images + len(images) > self.max_queue:
            raise QueueFull(
                f"{self._waiting_images} images are waiting and this request adds {len(images)}; the server takes "
                f"{self.max_queue} at most (--max-queue): retry shortly"
            )
        loop = asyncio.get_running_loop()
        futures = []
        for chunk in images.split(self.max_batch_size):
            futures.append(loop.create_future())
            self._waiting.append((chunk, futures[-1]))
        self._waiting_images += len(images)
        self._arrived.set()
        return torch.cat(await asyncio.gather(*futures))

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            deadline = loop.time() + self.max_delay_s
            while (
                self._expected > 0
                and self._waiting_images < self.max_batch_size
                and not self._flushing
                and loop.time() < deadline
            ):
                await self._next_arrival(deadline - loop.time(), loop)
            batch = self._take_batch()
            if batch:
                await self._run_batch(batch, loop)

    async def _next_arrival(self, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until a request arrives, a flush, or `timeout` seconds pass (a timer sets the event: no
        cancellation, which `asyncio.wait_for` can lose when the event is set at the same moment)."""
        self._arrived.clear()
        timer = loop.call_later(timeout, self._arrived.set)
        try:
            await self._arrived.wait()
        finally:
            timer.cancel()

    def _take_batch(self) -> list[tuple[torch.Tensor, asyncio.Future]]:
        """The waiting chunks that fit one batch, in arrival order (always at least one), minus those whose
        request has gone (a client that disconnected)."""
        batch, size = [], 0
        while self._waiting and (not batch or size + len(self._waiting[0][0]) <= self.max_batch_size):
            chunk, future = self._waiting.popleft()
            self._waiting_images -= len(chunk)
            size += len(chunk)
            batch.append((chunk, future))
        return [(chunk, future) for chunk, future in batch if not future.done()]

    async def _run_batch(self, batch: list[tuple[torch.Tensor, asyncio.Future]], loop) -> None:
        chunks = [chunk for chunk, _ in batch]
        try:
            outputs = await loop.run_in_executor(self._executor, self._run, torch.cat(chunks))
        except Exception as error:  # the model failed: every request of the batch gets the error, the server goes on
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        self._on_batch(len(outputs))
        for output, (_, future) in zip(outputs.split([len(c) for c in chunks]), batch, strict=True):
            if not future.done():
                future.set_result(output)
