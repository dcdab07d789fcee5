"""Liveness and readiness, for orchestrators and for `dupdetect serve` users."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency, Provide

from dupdetect.api.errors import error_responses
from dupdetect.error_codes import Code
from dupdetect.errors import DupdetectError
from dupdetect.images.deps import provide_probe
from dupdetect.images.service import ImageService
from dupdetect.observability import STORE_UP

READY_TIMEOUT_S = 2.0
"""/ready answers 503 when the store does not answer within this (probes time out at ~5 s)."""


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    store: str
    """The vector store that answered: pgvector or pinecone."""
    model: str


class HealthController(Controller):
    tags = ("health",)
    dependencies = {"probe": Provide(provide_probe, sync_to_thread=False)}  # noqa: RUF012 - Litestar's own attribute

    @get("/health", summary="Liveness: the process answers")
    async def health(self) -> Health:
        return Health(status="ok")

    @get(
        "/ready",
        summary="Readiness: the vector store answers and the model is loaded",
        responses=error_responses((503, "The vector store does not answer")),
    )
    async def ready(self, probe: NamedDependency[ImageService]) -> Readiness:
        store = probe.store.name
        check = asyncio.ensure_future(probe.ping())
        check.add_done_callback(lambda done: done.cancelled() or done.exception())  # a late failure is not news
        finished, _ = await asyncio.wait({check}, timeout=READY_TIMEOUT_S)  # not waiting for a stuck query's cleanup
        if not finished:
            check.cancel()
        problem = "no answer in time" if not finished else check.exception()
        if problem is not None:
            STORE_UP.set(0)
            raise DupdetectError(
                Code.STORE_UNAVAILABLE, f"{store} not ready: {problem}", headers={"Retry-After": "2"}, status=503
            )
        STORE_UP.set(1)
        return Readiness(status="ready", store=store, model=probe.descriptor)
