"""One way to send images to a running service in tests."""

from __future__ import annotations

from typing import Any

import aiohttp


def form(*files: tuple[str, bytes]) -> aiohttp.FormData:
    """A multipart body with each (file name, bytes) as a ``files`` part."""
    data = aiohttp.FormData()
    for name, payload in files:
        data.add_field("files", payload, filename=name, content_type="application/octet-stream")
    return data


async def upload(http: aiohttp.ClientSession, base_url: str, *files: tuple[str, bytes], **kwargs: Any) -> dict[str, Any]:
    """POST /images, which must store the request (201); its answer."""
    async with http.post(f"{base_url}/images", data=form(*files), **kwargs) as resp:
        assert resp.status == 201, await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer
