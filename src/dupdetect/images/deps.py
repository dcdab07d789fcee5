"""What the image handlers receive: the image service of the caller's collection and the body
reader. The only place (with the other domains' ``deps``) that opens the runtime."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State

from dupdetect.api.auth import caller_collection
from dupdetect.images.body import BodyReader
from dupdetect.images.service import ImageService
from dupdetect.runtime import Runtime


def _runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


def provide_images(request: Request[Any, Any, Any], state: State) -> ImageService:
    """The image service over the caller's collection (found by the ``authenticated`` guard)."""
    runtime = _runtime(state)
    return runtime.images.scoped(caller_collection(request))


def provide_body(state: State) -> BodyReader:
    """POST bodies read within the configured limits."""
    return BodyReader(_runtime(state).settings.limits)


def provide_probe(state: State) -> ImageService:
    """The service over the whole store, for readiness: no key needed, nothing read."""
    return _runtime(state).images
