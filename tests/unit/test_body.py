"""Reading a request body into items, without a server: every form of base64, the per-item
errors, and the request errors raised before anything is decoded."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import msgspec
import pytest

from dupdetect.errors import DupdetectError
from dupdetect.images.body import read_json, read_multipart
from dupdetect.settings import LimitSettings

LIMITS = LimitSettings()
PAYLOAD = bytes(range(256)) * 3  # every byte value, so each alphabet's special characters occur


async def _stream(body: bytes, chunk: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]


async def _json(images: list[dict[str, str]], limits: LimitSettings = LIMITS) -> list[tuple[str | None, bytes | None]]:
    items = await read_json(_stream(json.dumps({"images": images}).encode()), limits)
    return [(item.error.code if item.error else None, item.data) for item in items]


async def test_base64_is_read_as_base64_and_browsers_write_it() -> None:
    standard = base64.b64encode(PAYLOAD).decode()
    forms = [
        standard,
        f"data:image/jpeg;base64,{standard}",
        base64.encodebytes(PAYLOAD).decode(),  # wrapped at 76 columns, as `base64` prints it
        base64.urlsafe_b64encode(PAYLOAD).decode().rstrip("="),  # URL-safe, unpadded
    ]
    assert await _json([{"base64": text} for text in forms]) == [(None, PAYLOAD)] * len(forms)


async def test_each_bad_item_gets_its_own_code_and_the_others_are_read() -> None:
    good = base64.b64encode(b"ok").decode()
    found = await _json(
        [
            {"base64": "aGVsbG8é"},  # non-ASCII
            {"base64": "not base64!"},
            {"base64": f"data:image/png,{good}"},  # a data: URL that is not base64
            {"base64": good, "url": "http://example.com/a.jpg"},
            {"base64": good, "filename": "a\nb.jpg"},
            {"url": "http://example.com/" + "a" * 5000},
            {"base64": good},
        ]
    )
    codes = [code for code, _ in found]
    assert codes == [
        "invalid_base64",
        "invalid_base64",
        "invalid_base64",
        "invalid_item",
        "invalid_filename",
        "invalid_url",
        None,
    ]
    assert found[-1] == (None, b"ok")


async def test_an_image_over_the_limit_is_refused_before_its_base64_is_decoded() -> None:
    limits = msgspec.structs.replace(LIMITS, max_image_bytes=100)
    assert await _json([{"base64": "A" * 1000}], limits) == [("image_too_large", None)]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b'{"pictures": []}', "invalid_request"),
        (b'{"images": [{"base64": "aGk=", "colour": "red"}]}', "invalid_request"),
        (json.dumps({"images": [{}] * 101}).encode(), "too_many_images"),
    ],
)
async def test_a_bad_json_body_is_one_request_error(body: bytes, code: str) -> None:
    with pytest.raises(DupdetectError) as caught:
        await read_json(_stream(body), LIMITS)
    assert caught.value.code == code


def _multipart(*parts: tuple[str, str, bytes]) -> bytes:
    out = b""
    for field, name, data in parts:
        out += b'--b\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\n\r\n' % (field.encode(), name.encode())
        out += data + b"\r\n"
    return out + b"--b--\r\n"


async def test_multipart_files_keep_their_names_and_order_and_another_field_is_named() -> None:
    body = _multipart(("files", "a.jpg", b"first"), ("files", "ünï.png", b"second"))
    items = await read_multipart("multipart/form-data; boundary=b", _stream(body, chunk=7), LIMITS)
    assert [(item.index, item.filename, item.data) for item in items] == [(0, "a.jpg", b"first"), (1, "ünï.png", b"second")]

    with pytest.raises(DupdetectError) as caught:
        await read_multipart("multipart/form-data; boundary=b", _stream(_multipart(("image", "a.jpg", b"x"))), LIMITS)
    assert caught.value.code == "unexpected_field" and "'image'" in caught.value.message


async def test_a_multipart_file_over_the_limit_is_cut_off_and_the_next_one_read() -> None:
    limits = msgspec.structs.replace(LIMITS, max_image_bytes=10)
    body = _multipart(("files", "big.jpg", b"x" * 100), ("files", "small.jpg", b"fine"))
    items = await read_multipart("multipart/form-data; boundary=b", _stream(body, chunk=16), limits)
    assert [(item.error.code if item.error else None, item.data) for item in items] == [
        ("image_too_large", None),
        (None, b"fine"),
    ]
