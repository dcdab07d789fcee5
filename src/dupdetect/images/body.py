"""Reading a POST /images body into items, within limits, without buffering what is too big.

Two body forms: ``multipart/form-data`` with the field ``files`` repeated, or JSON
``{"images": [{"base64": …, "filename": …}, {"url": …}]}``. A bad item becomes an item error
(reported, never dropped); a body that breaks a request-wide limit is refused whole.
"""

from __future__ import annotations

import asyncio
import binascii
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from dupdetect.error_codes import Code
from dupdetect.errors import DupdetectError
from dupdetect.settings import LimitSettings


class ItemError(msgspec.Struct, frozen=True):
    code: str
    message: str


@dataclass
class Item:
    """One image as sent: bytes (upload, base64), or a URL still to fetch; or why it is unusable."""

    index: int
    filename: str | None = None
    url: str | None = None
    data: bytes | None = None
    error: ItemError | None = None


class ImageEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    base64: str | None = None
    """The image bytes, base64; a ``data:image/…;base64,`` prefix is allowed."""
    url: str | None = None
    """An http(s) URL to fetch the image from."""
    filename: str | None = None
    """Recorded with the image (base64 items)."""


class ImagesBody(msgspec.Struct, forbid_unknown_fields=True):
    images: list[ImageEntry]


MAX_NAME_LENGTH = 1024
MAX_URL_LENGTH = 4096


def _name_error(name: str | None) -> ItemError | None:
    """Names are stored as given: refuse what a database or a metadata field cannot hold."""
    if name is None:
        return None
    if len(name) > MAX_NAME_LENGTH:
        return ItemError(Code.INVALID_FILENAME, f"the filename is longer than {MAX_NAME_LENGTH} characters")
    if any(ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF for ch in name):
        return ItemError(Code.INVALID_FILENAME, "the filename contains control or unpaired surrogate characters")
    return None


def _too_large(limits: LimitSettings) -> ItemError:
    return ItemError(Code.IMAGE_TOO_LARGE, f"the image is larger than the {limits.max_image_bytes:,}-byte limit")


def _too_many(limits: LimitSettings) -> DupdetectError:
    return DupdetectError(Code.TOO_MANY_IMAGES, f"at most {limits.max_images_per_request} images per request", status=413)


async def _limited(stream: AsyncIterator[bytes], limit: int, hint: str = "") -> AsyncIterator[bytes]:
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            raise DupdetectError(
                Code.REQUEST_TOO_LARGE, f"the request body is larger than the {limit:,}-byte limit{hint}", status=413
            )
        yield chunk


async def read_multipart(content_type: str, stream: AsyncIterator[bytes], limits: LimitSettings) -> list[Item]:
    boundary = parse_options_header(content_type)[1].get("boundary")
    if not boundary:
        raise DupdetectError(Code.INVALID_MULTIPART, "multipart/form-data without a boundary", status=400)
    items: list[Item] = []
    current: Item | None = None
    buffer = bytearray()
    try:
        with PushMultipartParser(boundary, max_segment_count=limits.max_images_per_request * 2 + 8) as parser:
            async for chunk in _limited(stream, limits.max_request_bytes):
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        if event.name != "files":
                            raise DupdetectError(
                                Code.UNEXPECTED_FIELD, f"unexpected form field {event.name!r}; send images as `files`", status=400
                            )
                        if len(items) >= limits.max_images_per_request:
                            raise _too_many(limits)
                        current = Item(index=len(items), filename=event.filename, error=_name_error(event.filename))
                        items.append(current)
                        buffer = bytearray()
                    elif event is None:
                        assert current is not None
                        if current.error is None:
                            current.data = bytes(buffer)
                        buffer = bytearray()
                    elif current is not None and current.error is None:
                        buffer += event
                        if len(buffer) > limits.max_image_bytes:
                            current.error = _too_large(limits)  # the rest of this part is skipped, not kept
                            buffer = bytearray()
    except MultipartError as exc:
        raise DupdetectError(Code.INVALID_MULTIPART, f"the multipart body is malformed: {exc}", status=400) from exc
    return items


_URL_SAFE = str.maketrans("-_", "+/")


def _decode_base64(entry: ImageEntry, index: int, limits: LimitSettings) -> Item:
    text = entry.base64 or ""
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            return Item(index, entry.filename, error=ItemError(Code.INVALID_BASE64, "a data: URL must be ';base64,' encoded"))
    if len(text) // 4 * 3 > limits.max_image_bytes + 2:
        return Item(index, entry.filename, error=_too_large(limits))
    # As `base64` writes it (wrapped at 76 columns) and the URL-safe alphabet, padded or not.
    compact = "".join(text.split()).translate(_URL_SAFE)
    compact += "=" * (-len(compact) % 4)
    if not compact.isascii():
        return Item(index, entry.filename, error=ItemError(Code.INVALID_BASE64, "the base64 data contains non-ASCII characters"))
    try:
        data = binascii.a2b_base64(compact, strict_mode=True)
    except binascii.Error as exc:
        return Item(index, entry.filename, error=ItemError(Code.INVALID_BASE64, f"the base64 data is malformed: {exc}"))
    if len(data) > limits.max_image_bytes:
        return Item(index, entry.filename, error=_too_large(limits))
    return Item(index, entry.filename, data=data)


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
FIRST_COUNT_AT = 1 << 20
"""Bytes of a JSON body read before its objects are first counted."""
STRINGS_PER_ITEM = 6
"""An entry holds at most three fields (base64, url, filename): six strings with their names."""


def _objects_at_most(body: bytes | bytearray, limit: int) -> bool:
    """Whether the body holds at most ``limit`` JSON objects (every image entry is one), counted
    without decoding it: 16 million ``{}`` entries in a 48 MB body decode to gigabytes before a
    length check could run. Braces inside strings are told apart only when the quick count is
    too high, and only among as many strings as ``limit`` entries can hold (more strings than
    that are too many entries, or fields no entry has, by themselves)."""
    if body.count(b"{") <= limit:
        return True
    quotes = body.count(b'"') - body.count(b'\\"')  # an escaped quote is inside a string
    if quotes > 2 * (STRINGS_PER_ITEM * limit + 1):
        return False
    return _JSON_STRING.sub(b"", body).count(b"{") <= limit


async def _refuse_too_many(body: bytes | bytearray, objects: int, limits: LimitSettings) -> None:
    """413 for a body of more than ``objects`` objects; the full count runs off the event loop,
    and only when the quick one is too high."""
    if body.count(b"{") > objects and not await asyncio.to_thread(_objects_at_most, body, objects):
        raise _too_many(limits)


async def read_json(stream: AsyncIterator[bytes], limits: LimitSettings) -> list[Item]:
    body = bytearray()
    hint = " for JSON; send larger batches as multipart/form-data"
    objects = limits.max_images_per_request + 1  # one for the body, one per entry
    check_at = FIRST_COUNT_AT
    async for chunk in _limited(stream, min(limits.max_json_bytes, limits.max_request_bytes), hint):
        body += chunk
        if len(body) >= check_at:  # at 1, 2, 4… MB: a body of too many items is refused before it is all sent
            check_at *= 2
            # The prefix may end inside a string: a space and a quote close it (or open an empty one).
            await _refuse_too_many(bytes(body) + b' "', objects, limits)
    await _refuse_too_many(body, objects, limits)
    try:
        parsed = msgspec.json.decode(body, type=ImagesBody)
    except msgspec.ValidationError as exc:
        raise DupdetectError(Code.INVALID_REQUEST, f"the JSON body does not match the schema: {exc}", status=400) from exc
    except msgspec.DecodeError as exc:
        raise DupdetectError(Code.INVALID_JSON, f"the body is not valid JSON: {exc}", status=400) from exc
    if len(parsed.images) > limits.max_images_per_request:
        raise _too_many(limits)
    items = []
    for index, entry in enumerate(parsed.images):
        name_error = _name_error(entry.filename) or (
            ItemError(Code.INVALID_URL, f"the URL is longer than {MAX_URL_LENGTH} characters or contains control characters")
            if entry.url is not None and (len(entry.url) > MAX_URL_LENGTH or _name_error(entry.url) is not None)
            else None
        )
        if name_error is not None:
            items.append(Item(index, error=name_error))
        elif (entry.base64 is None) == (entry.url is None):
            items.append(Item(index, entry.filename, error=ItemError(Code.INVALID_ITEM, "give exactly one of base64 or url")))
        elif entry.url is not None:
            items.append(Item(index, entry.filename, url=entry.url))
        else:
            items.append(_decode_base64(entry, index, limits))
    return items


async def _paced(stream: AsyncIterator[bytes], limits: LimitSettings) -> AsyncIterator[bytes]:
    """A client that stops sending mid-body, or drips it, is dropped instead of holding a
    connection: no pause longer than ``body_read_timeout``, and after that long, an average of
    at least ``min_body_rate`` bytes per second."""
    chunks, clock = aiter(stream), asyncio.get_running_loop()
    started, received = clock.time(), 0
    while True:
        now = clock.time()
        pause_ends = now + limits.body_read_timeout
        # When the bytes so far stop covering the rate: the grace plus their time at the rate.
        rate_ends = started + limits.body_read_timeout + received / limits.min_body_rate
        try:
            async with asyncio.timeout_at(min(pause_ends, rate_ends)):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            if rate_ends < pause_ends - 0.01:
                raise DupdetectError(
                    Code.BODY_TIMEOUT,
                    f"the body arrives slower than {limits.min_body_rate:,} bytes/s (DUPDETECT_MIN_BODY_RATE)",
                    status=408,
                ) from None
            raise DupdetectError(
                Code.BODY_TIMEOUT, f"no part of the body arrived for {limits.body_read_timeout:g} s", status=408
            ) from None
        received += len(chunk)
        yield chunk


async def read_items(
    content_type: str, stream: AsyncIterator[bytes], limits: LimitSettings, *, declared_length: str | None = None
) -> list[Item]:
    """The body's items. ``declared_length`` (Content-Length) refuses an oversized body before
    reading it; the stream is counted anyway, as a client may lie or send it chunked."""
    if declared_length and declared_length.isdigit() and int(declared_length) > limits.max_request_bytes:
        raise DupdetectError(
            Code.REQUEST_TOO_LARGE, f"the request body is larger than {limits.max_request_bytes:,} bytes", status=413
        )
    stream = _paced(stream, limits)
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        items = await read_multipart(content_type, stream, limits)
    elif media_type == "application/json":
        items = await read_json(stream, limits)
    else:
        raise DupdetectError(
            Code.UNSUPPORTED_MEDIA_TYPE, "send multipart/form-data (field `files`) or application/json", status=415
        )
    if not items:
        raise DupdetectError(Code.NO_IMAGES, "the request contains no images", status=400)
    return items


class BodyReader:
    """The body parser as the handlers receive it: the limits are the service's, not theirs."""

    def __init__(self, limits: LimitSettings) -> None:
        self.limits = limits

    async def read(self, content_type: str, stream: AsyncIterator[bytes], declared_length: str | None) -> list[Item]:
        return await read_items(content_type, stream, self.limits, declared_length=declared_length)
