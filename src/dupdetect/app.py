"""The Litestar application: ``create_app()`` and the plugin that wires the API."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.plugins import InitPluginProtocol
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from dupdetect import __version__
from dupdetect.api.auth import CallerLimits, metrics_guard
from dupdetect.api.docs import OfflineDocs
from dupdetect.api.errors import EXCEPTION_HANDLERS
from dupdetect.api.health import HealthController
from dupdetect.api.limits import client_limits
from dupdetect.api.shutdown import cut_off_answers
from dupdetect.api.trust import trusted_requests
from dupdetect.images.controller import ImagesController
from dupdetect.images.deps import provide_body, provide_images
from dupdetect.observability import request_ids
from dupdetect.review.controller import DecisionsController, ReviewController
from dupdetect.runtime import Runtime, running
from dupdetect.settings import Settings

log = logging.getLogger(__name__)


class MetricsController(PrometheusController):
    guards = [metrics_guard]  # noqa: RUF012 - Litestar reads it from the class
    include_in_schema = False  # Prometheus text, not part of the JSON API


class DupdetectPlugin(InitPluginProtocol):
    """Routes, dependencies, exception handlers and the runtime's lifespan, in one place."""

    def __init__(self, settings: Settings, runtime: Runtime | None = None) -> None:
        self.settings = settings
        self.runtime = runtime

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Litestar) -> AsyncIterator[None]:
        if self.runtime is not None:  # started and stopped by the caller (`dupdetect serve`)
            app.state.runtime = self.runtime
            yield
            return
        started = time.perf_counter()
        async with running(self.settings) as runtime:
            app.state.runtime = runtime
            server = self.settings.server
            log.info(
                "dupdetect %s ready on http://%s:%d in %.2fs",
                __version__,
                server.host,
                server.port,
                time.perf_counter() - started,
            )
            yield

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        prometheus = PrometheusConfig(app_name="dupdetect", prefix="dupdetect_http", group_path=True)
        app_config.route_handlers.extend([HealthController, ImagesController, ReviewController, MetricsController])
        if self.settings.store.store == "pgvector":  # the store that keeps pairs and decisions (ReviewStore)
            app_config.route_handlers.append(DecisionsController)
        caller_limits = CallerLimits(self.settings.server)  # counted by the `authenticated` guard
        app_config.middleware[:0] = [
            request_ids,
            trusted_requests(self.settings.server),
            cut_off_answers,
            prometheus.middleware,
            client_limits(self.settings.limits.max_requests_per_client, caller_limits.failures),
        ]
        app_config.state["caller_limits"] = caller_limits
        app_config.logging_config = None  # the CLI configures JSON logging; embedders keep theirs
        app_config.dependencies["images"] = Provide(provide_images, sync_to_thread=False)
        app_config.dependencies["reader"] = Provide(provide_body, sync_to_thread=False)
        app_config.exception_handlers.update(EXCEPTION_HANDLERS)
        app_config.lifespan.append(self._lifespan)
        app_config.openapi_config = OpenAPIConfig(
            title="dupdetect",
            version=__version__,
            description="Find duplicate and near-duplicate images.",
            path="/schema",
            render_plugins=[OfflineDocs(), JsonRenderPlugin()],
        )
        return app_config


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Litestar:
    """Also the ASGI factory for other servers: ``uvicorn --factory dupdetect.app:create_app``
    (the app then starts its runtime in its lifespan); ``runtime``: one already running."""
    return Litestar(plugins=[DupdetectPlugin(settings or Settings.from_env(), runtime)])
