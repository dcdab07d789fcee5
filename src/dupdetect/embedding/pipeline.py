"""Bytes → descriptor: decoding in worker processes (:mod:`dupdetect.embedding.decoders`),
inference in the batching worker thread, so the model never waits on JPEG decode and the event
loop never waits on either.

Decoding (entropy decode, resize, pHash, thumbnail) runs in processes, not threads: in threads
it shares one GIL with the model's thread, which then waits to launch its kernels.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from dupdetect.embedding.decode import DecodedImage
from dupdetect.embedding.decoders import DecoderPool
from dupdetect.embedding.model import Embedder
from dupdetect.embedding.worker import EmbeddingWorker, Overloaded
from dupdetect.settings import Settings


@dataclass(frozen=True)
class EmbeddedImage:
    image: DecodedImage
    vector: np.ndarray
    """float32, unit length."""


class EmbeddingPipeline:
    """``shared``: callers take turns (the service); a folder command is the only caller."""

    def __init__(self, settings: Settings, *, shared: bool = True) -> None:
        model, limits = settings.model, settings.limits
        self.embedder = Embedder(model)
        self.worker = EmbeddingWorker(
            self.embedder, batch_size=model.batch_size, batch_wait_ms=model.batch_wait_ms, queue_size=model.queue_size
        )
        self.decode_workers = model.decode_workers or os.cpu_count() or 1
        options = {
            "size": self.embedder.image_size,
            "max_pixels": limits.max_pixels,
            "max_decode_bytes": limits.max_decode_bytes,
            "thumbnail": model.thumbnail_size,
            "keypoints": settings.duplicates.geometric_check,
        }
        self.decoders = DecoderPool(
            self.decode_workers, options, timeout=limits.decode_timeout, memory=limits.max_decode_bytes, shared=shared
        )
        self.capacity = model.queue_size
        self.per_caller = model.queue_size - limits.max_images_per_request if shared else model.queue_size
        """Images one caller may have admitted: the rest is room for another caller's request."""
        self.admitted = 0
        """Images of admitted requests not embedded yet (the event loop's own count: no lock)."""
        self._admitted_by: collections.Counter[str] = collections.Counter()

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
        self.decoders.start()

    def stop(self) -> None:
        self.decoders.stop()
        self.worker.stop()

    def _refusal(self, images: int, caller: str) -> Overloaded | None:
        mine = self._admitted_by[caller]
        if self.admitted + images > self.capacity:
            waiting, whose = self.admitted, "images are"
        elif mine and mine + images > self.per_caller:
            waiting, whose = mine, "images of this collection are"
        else:
            return None
        wait = math.ceil(waiting * self.worker.seconds_per_image)
        return Overloaded(f"{waiting} {whose} already waiting for the model", retry_after=min(60, max(1, wait)))

    def check_room(self, caller: str) -> None:
        """Raise Overloaded when not even one more image of ``caller`` would be admitted: a
        request is then refused before its body is read."""
        refusal = self._refusal(1, caller)
        if refusal is not None:
            raise refusal

    @contextlib.contextmanager
    def admit(self, images: int, caller: str) -> Iterator[None]:
        """Admit a request's images before any is fetched, decoded or embedded, or refuse it at
        once (Overloaded): work that is admitted always finishes, none is thrown away. One
        caller never holds the room another caller's request needs."""
        refusal = self._refusal(images, caller)
        if refusal is not None:
            raise refusal
        self.admitted += images
        self._admitted_by[caller] += images
        try:
            yield
        finally:
            self.admitted -= images
            self._admitted_by[caller] -= images
            if not self._admitted_by[caller]:
                del self._admitted_by[caller]

    async def decode(self, data: bytes, caller: str) -> DecodedImage:
        """Raises DecodeError for bad bytes, a decode past its time or its memory."""
        return await self.decoders.decode(data, caller)

    async def embed(self, data: bytes, caller: str) -> EmbeddedImage:
        """Raises DecodeError for bad bytes and Overloaded when the model queue is full."""
        image = await self.decode(data, caller)
        return EmbeddedImage(image=image, vector=await self.worker.embed(image.pixels))
