"""Concurrent ingests on one PostgreSQL take no global lock and still find each other: in
one service, and across two service processes. Every pair is recorded exactly once."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from dupdetect.images.body import Item
from dupdetect.runtime import running
from dupdetect.settings import Settings
from tests.http import upload
from tests.photos import PHOTOS, edited_copy, jpeg
from tests.processes import cli_env, free_port, start_serve, wait_ready


async def _recorded_pairs(dsn: str) -> list[tuple[str, str]]:
    """Every row of the duplicates table as (filename, filename)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT a.filename AS a, b.filename AS b FROM duplicates d"
            " JOIN images a ON a.id = d.image_id JOIN images b ON b.id = d.duplicate_id"
        )
        assert not await conn.fetchval("SELECT count(*) FROM requests WHERE NOT settled")
    finally:
        await conn.close()
    return [(row["a"], row["b"]) for row in rows]


def _assert_each_pair_once(rows: list[tuple[str, str]], expected: set[frozenset[str]]) -> None:
    pairs = [frozenset(row) for row in rows]
    assert len(pairs) == len(set(pairs)), "a pair was recorded twice"
    assert set(pairs) == expected


async def test_simultaneous_uploads_of_one_photo_are_paired(base_url: str, http: aiohttp.ClientSession, dsn: str) -> None:
    bodies = await asyncio.gather(
        upload(http, base_url, ("a.jpg", jpeg("astronaut"))),
        upload(http, base_url, ("b.jpg", jpeg("astronaut"))),
        upload(http, base_url, ("c.jpg", edited_copy("astronaut"))),
    )
    expected = {frozenset((f"{x}.jpg", f"{y}.jpg")) for x, y in itertools.combinations("abc", 2)}
    _assert_each_pair_once(await _recorded_pairs(dsn), expected)
    for body in bodies:
        async with http.get(f"{base_url}/duplicates/{body['request_id']}") as resp:
            assert len((await resp.json())["images"][0]["duplicates"]) == 2


@pytest.mark.slow
async def test_two_service_processes_racing_on_one_database_record_every_pair_once(
    dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Each photo is sent three times (the same bytes twice, an edited copy once), every
    upload its own request, spread over two `dupdetect serve` processes, all at once."""
    ports = [free_port(), free_port()]
    procs = [
        start_serve(cli_env(DUPDETECT_DATABASE_URL=dsn, DUPDETECT_DATA_DIR=str(tmp_path / str(port))), port) for port in ports
    ]
    try:
        for proc, port in zip(procs, ports, strict=True):
            await asyncio.to_thread(wait_ready, proc, port)
        uploads = [
            (f"{name}-{variant}.jpg", payload)
            for name in PHOTOS
            for variant, payload in (("a", jpeg(name)), ("b", jpeg(name)), ("edit", edited_copy(name)))
        ]
        await asyncio.gather(
            *(
                upload(http, f"http://127.0.0.1:{ports[i % 2]}", (filename, payload))
                for i, (filename, payload) in enumerate(uploads)
            )
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    expected = {
        frozenset((f"{name}-{x}.jpg", f"{name}-{y}.jpg"))
        for name in PHOTOS
        for x, y in itertools.combinations(("a", "b", "edit"), 2)
    }
    _assert_each_pair_once(await _recorded_pairs(dsn), expected)


async def test_an_ingest_cut_off_before_its_concurrent_check_gets_its_pairs_later(settings: Settings) -> None:
    """As if the process died between its commit and the comparison with concurrent uploads."""
    async with running(settings) as runtime:
        images = runtime.images
        await images.ingest([Item(index=0, filename="a.jpg", data=jpeg("coffee"))])
        await images.add_unsearched([Item(index=0, filename="b.jpg", data=edited_copy("coffee"))])  # committed, not searched
        [(collection, cut_off)] = await images.store.unsettled_requests(older_than_s=0)
        assert collection == "default"

        assert await images.settle_pending(older_than_s=0) == (1, 1)
        [(_, matches)] = await images.duplicates(cut_off)
        assert [match.image.filename for match in matches] == ["a.jpg"]
        assert await images.store.unsettled_requests(older_than_s=0) == []


async def test_a_pass_over_many_unsettled_requests_at_once_settles_each_and_records_each_pair_once(
    settings: Settings, dsn: str
) -> None:
    """A folder's k-NN pass works on two requests together: each request is settled once, and a
    pair whose images sit in two requests in progress together is recorded once."""
    async with running(settings) as runtime:
        images = runtime.images
        for name in PHOTOS:
            for variant, payload in (("a", jpeg(name)), ("edit", edited_copy(name))):
                await images.add_unsearched([Item(index=0, filename=f"{name}-{variant}.jpg", data=payload)])
        assert await images.settle_pending(older_than_s=0, at_once=2) == (2 * len(PHOTOS), len(PHOTOS))
        assert await images.settle_pending(older_than_s=0, at_once=2) == (0, 0)
    _assert_each_pair_once(await _recorded_pairs(dsn), {frozenset((f"{n}-a.jpg", f"{n}-edit.jpg")) for n in PHOTOS})
