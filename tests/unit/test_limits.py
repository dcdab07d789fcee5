"""Per-client limits as plain rules: counting per minute, and counting JSON items unread."""

from __future__ import annotations

import pytest

from dupdetect.api.limits import MinuteCounter
from dupdetect.errors import DupdetectError
from dupdetect.images.body import _objects_at_most


def test_a_minute_counter_refuses_past_its_limit_and_only_that_identity() -> None:
    counter = MinuteCounter(2, "requests")
    counter.hit("key:a")
    counter.hit("key:a")
    with pytest.raises(DupdetectError) as refused:
        counter.hit("key:a")
    assert refused.value.status == 429 and 1 <= int(refused.value.headers["Retry-After"]) <= 61
    counter.hit("key:b")  # another identity has its own minute


def test_checking_counts_nothing_but_refuses_an_identity_at_its_limit() -> None:
    counter = MinuteCounter(1, "failed attempts")
    counter.check("address:x")
    counter.check("address:x")
    counter.hit("address:x")
    with pytest.raises(DupdetectError):
        counter.check("address:x")


def test_no_limit_counts_nothing() -> None:
    counter = MinuteCounter(0, "requests")
    for _ in range(1000):
        counter.hit("key:a")


@pytest.mark.parametrize(
    ("body", "fits"),
    [
        (b'{"images": [' + b"{}," * 100 + b"{}]}", False),
        (b'{"images": [' + b"{}," * 99 + b"{}]}", True),
        (b'{"images": [{"url": "http://x/' + b"{" * 500 + b'"}]}', True),  # braces in a string are no items
        (b'{"images": [{"url": "a\\"{{{{{{{{"}]}', True),  # nor after an escaped quote
    ],
)
def test_json_items_are_counted_without_decoding(body: bytes, fits: bool) -> None:
    assert _objects_at_most(body, 101) is fits


@pytest.mark.parametrize("cut", [10, 25, 31, 40])
def test_a_prefix_that_ends_inside_a_string_counts_that_strings_braces_as_text(cut: int) -> None:
    body = b'{"images": [{"url": "http://x/' + b"{" * 500 + b'"}]}'
    assert _objects_at_most(body[: cut + 20] + b' "', 101)
    assert _objects_at_most(b'{"images": [{"url": "a\\' + b' "', 101)  # cut after a backslash
