"""Bytes → descriptor: decoding in worker processes, inference in the batching worker thread,
so the model never waits on JPEG decode and the event loop never waits on either.

Decoding (entropy decode, resize, pHash, thumbnail) runs in processes, not threads: in threads
it shares one GIL with the model's thread, which then waits to launch its kernels.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from dupdetect.embedding.decode import DecodedImage, DecodeError, decode
from dupdetect.embedding.model import Embedder
from dupdetect.embedding.worker import EmbeddingWorker, Overloaded
from dupdetect.settings import Settings


@dataclass(frozen=True)
class EmbeddedImage:
    image: DecodedImage
    vector: np.ndarray
    """float32, unit length."""


class EmbeddingPipeline:
    def __init__(self, settings: Settings) -> None:
        model = settings.model
        self.embedder = Embedder(model)
        self.worker = EmbeddingWorker(
            self.embedder, batch_size=model.batch_size, batch_wait_ms=model.batch_wait_ms, queue_size=model.queue_size
        )
        self._decode = functools.partial(
            decode, size=self.embedder.image_size, max_pixels=settings.limits.max_pixels,
            max_decode_bytes=settings.limits.max_decode_bytes, thumbnail=model.thumbnail_size,
            keypoints=settings.duplicates.geometric_check,
        )
        self.decode_workers = model.decode_workers or os.cpu_count() or 1
        self._decoders = self._new_decoders()
        self.capacity = model.queue_size
        self.admitted = 0
        """Images of admitted requests not embedded yet (the event loop's own count: no lock)."""

    def _new_decoders(self) -> ProcessPoolExecutor:
        # spawn: forking a process whose torch already runs OpenMP threads can deadlock the child.
        return ProcessPoolExecutor(self.decode_workers, mp_context=multiprocessing.get_context("spawn"))

    @property
    def descriptor(self) -> str:
        """Backbone, pooling and input size (``efficientnet_lite0/gem3-v1/224px``): what each
        stored vector is tagged with (the ``model`` column) and compared only with its own."""
        return self.embedder.name

    @property
    def dims(self) -> int:
        return self.embedder.dims

    def start(self) -> None:
        """Blocking: loads the model and starts the decoders (seconds), so call it in a thread
        from async code."""
        self.worker.start()
        list(self._decoders.map(abs, range(self.decode_workers)))  # spawn them now, not on the first request

    def stop(self) -> None:
        self.worker.stop()
        self._decoders.shutdown(wait=True, cancel_futures=True)

    @contextlib.contextmanager
    def admit(self, images: int) -> Iterator[None]:
        """Admit a request's images before any is fetched, decoded or embedded, or refuse it at
        once (Overloaded): work that is admitted always finishes, none is thrown away."""
        if self.admitted + images > self.capacity:
            wait = math.ceil(self.admitted * self.worker.seconds_per_image)
            raise Overloaded(
                f"{self.admitted} images are already waiting for the model", retry_after=min(60, max(1, wait))
            )
        self.admitted += images
        try:
            yield
        finally:
            self.admitted -= images

    async def decode(self, data: bytes) -> DecodedImage:
        decoders = self._decoders
        try:
            return await asyncio.get_running_loop().run_in_executor(decoders, self._decode, data)
        except BrokenProcessPool as exc:  # a worker died (killed for memory): start fresh ones
            if self._decoders is decoders:
                self._decoders = self._new_decoders()
                decoders.shutdown(wait=False, cancel_futures=True)
            raise DecodeError("corrupt_image", "decoding this image stopped its decoder process") from exc

    async def embed(self, data: bytes) -> EmbeddedImage:
        """Raises DecodeError for bad bytes and Overloaded when the model queue is full."""
        image = await self.decode(data)
        return EmbeddedImage(image=image, vector=await self.worker.embed(image.pixels))
