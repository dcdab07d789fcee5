"""Bytes → descriptor: decoding in a small thread pool, inference in the batching worker,
so the model never waits on JPEG decode and the event loop never waits on either."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from dupdetect.decode import DecodedImage, decode
from dupdetect.embedding.model import Embedder
from dupdetect.embedding.worker import EmbeddingWorker
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
        self._max_pixels = settings.limits.max_pixels
        self._thumbnail = model.thumbnail_size
        self._decoders = ThreadPoolExecutor(model.decode_workers, thread_name_prefix="dupdetect-decode")

    @property
    def model_name(self) -> str:
        return self.embedder.name

    @property
    def dims(self) -> int:
        return self.embedder.dims

    def start(self) -> None:
        """Blocking: loads the model (seconds), so call it in a thread from async code."""
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self._decoders.shutdown(wait=True, cancel_futures=True)

    async def decode(self, data: bytes) -> DecodedImage:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._decoders,
            lambda: decode(
                data, size=self.embedder.image_size, max_pixels=self._max_pixels, thumbnail=self._thumbnail
            ),
        )

    async def embed(self, data: bytes) -> EmbeddedImage:
        """Raises DecodeError for bad bytes and Overloaded when the model queue is full."""
        image = await self.decode(data)
        return EmbeddedImage(image=image, vector=await self.worker.embed(image.pixels))
