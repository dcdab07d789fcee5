"""One inference thread per process that batches images across concurrent requests.

Requests put decoded images on a bounded queue and await a future; the thread takes what is
waiting (up to ``batch_size``, holding the first item at most ``batch_wait_ms`` for company),
runs the model once and hands each vector back to its request's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from dupdetect.embedding.model import Embedder
from dupdetect.error_codes import Code
from dupdetect.errors import DupdetectError
from dupdetect.observability import BATCH_SIZE, IMAGES_EMBEDDED, QUEUE_DEPTH

log = logging.getLogger(__name__)


class Overloaded(DupdetectError):
    """No room for the work: 503, and the client retries after ``retry_after`` seconds (the time
    the work waiting now takes, by the model's recent speed), sent as Retry-After."""

    status = 503

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(Code.OVERLOADED, f"{message}; retry in {retry_after} s", headers={"Retry-After": str(retry_after)})


@dataclass
class _Job:
    pixels: np.ndarray
    future: asyncio.Future[np.ndarray]
    loop: asyncio.AbstractEventLoop


_STOP = object()


class EmbeddingWorker:
    def __init__(self, embedder: Embedder, *, batch_size: int, batch_wait_ms: float, queue_size: int) -> None:
        self.embedder = embedder
        self.batch_size = batch_size
        self.batch_wait = batch_wait_ms / 1000.0
        self._queue: queue.Queue[_Job | object] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.images = 0
        self.seconds_per_image = 0.05
        """Recent inference time per image (moving average), for Retry-After estimates."""

    def start(self) -> None:
        """Load the model (blocking) and start the thread."""
        self.embedder.load()
        QUEUE_DEPTH.set_function(self._queue.qsize)
        self._thread = threading.Thread(target=self._run, name="dupdetect-embed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    async def embed(self, pixels: np.ndarray) -> np.ndarray:
        """The descriptor of one decoded image, batched with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        job = _Job(pixels, loop.create_future(), loop)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Overloaded(f"{self._queue.maxsize} images are already waiting for the model") from None
        return await job.future

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        batch, stopping = [first], False
        deadline = time.monotonic() + self.batch_wait
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stopping = True
                break
            assert isinstance(item, _Job)
            batch.append(item)
        return batch, stopping

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, _Job)
            batch, stopping = self._collect(item)
            live = [job for job in batch if not job.future.cancelled()]
            if live:
                self._infer(live)
            if stopping:
                return

    def _infer(self, batch: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            vectors = self.embedder.predict(np.stack([job.pixels for job in batch]))
        except Exception as exc:  # a model failure fails its batch, not the worker
            log.exception("embedding a batch of %d failed", len(batch))
            for job in batch:
                job.loop.call_soon_threadsafe(_fail, job.future, exc)
            return
        self.seconds_per_image = 0.8 * self.seconds_per_image + 0.2 * (time.perf_counter() - started) / len(batch)
        self.batches += 1
        self.images += len(batch)
        IMAGES_EMBEDDED.inc(len(batch))
        BATCH_SIZE.observe(len(batch))
        for job, vector in zip(batch, vectors, strict=True):
            job.loop.call_soon_threadsafe(_resolve, job.future, vector)


def _resolve(future: asyncio.Future[np.ndarray], vector: np.ndarray) -> None:
    if not future.done():
        future.set_result(vector)


def _fail(future: asyncio.Future[np.ndarray], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
