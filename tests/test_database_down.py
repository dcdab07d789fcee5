"""The embedded PostgreSQL killed under a running service: clean 503s, then recovery by itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import aiohttp
import msgspec
import psutil
import pytest

from dupdetect.database import DatabaseError, DatabaseServer
from dupdetect.settings import DatabaseSettings, Settings
from tests.conftest import serving
from tests.photos import jpeg


def _postmaster(pgdata: Path) -> psutil.Process:
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and "-D" in cmdline and str(pgdata) in cmdline:
            return proc
    raise AssertionError(f"no postmaster for {pgdata}")


async def _post(http: aiohttp.ClientSession, base_url: str) -> tuple[int, dict, dict[str, str]]:
    form = aiohttp.FormData()
    form.add_field("files", jpeg("coffee"), filename="coffee.jpg")
    async with http.post(f"{base_url}/images", data=form) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def test_a_killed_database_answers_503_and_comes_back_without_a_restart(
    settings: Settings, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    embedded = msgspec.structs.replace(settings, database=DatabaseSettings(data_dir=tmp_path))
    async with serving(embedded) as base_url:
        status, first, _ = await _post(http, base_url)
        assert status == 201
        os.kill(_postmaster(tmp_path / "postgres").pid, signal.SIGKILL)

        status, body, headers = await _post(http, base_url)
        assert status == 503, body  # never a 500
        assert body["error"]["code"] == "store_unavailable" and int(headers["Retry-After"]) >= 1

        killed = time.monotonic()
        while True:  # back by itself (how fast is bench/soak.py's to measure: 3.4–3.6 s)
            status, body, _ = await _post(http, base_url)
            if status == 201:
                break
            assert status == 503 and body["error"]["code"] == "store_unavailable", body
            assert time.monotonic() - killed < 120, "never came back"  # a guard against hanging, not a measure
            await asyncio.sleep(0.2)
        async with http.get(f"{base_url}/ready") as resp:
            assert resp.status == 200
        async with http.get(f"{base_url}/duplicates/{body['request_id']}") as resp:
            found = (await resp.json())["images"][0]["duplicates"]
        assert [d["request_id"] for d in found] == [first["request_id"]]  # nothing committed was lost


def _pg_processes(pgdata: Path) -> list[psutil.Process]:
    return [
        proc
        for proc in psutil.process_iter(["name", "cmdline"])
        if proc.info["name"] == "postgres" and str(pgdata) in " ".join(proc.info["cmdline"] or [])
    ]


def test_bookkeeping_left_by_crashes_does_not_keep_or_block_the_database(tmp_path: Path) -> None:
    settings = DatabaseSettings(data_dir=tmp_path)
    pgdata = tmp_path / "postgres"
    DatabaseServer.start(settings).stop()

    # A service killed with -9 left its PID among the database's users...
    dead = psutil.Popen(["true"])
    dead.wait()
    (pgdata / ".handle_pids.json").write_text(json.dumps([dead.pid]))
    # ...and a crashed postmaster left postmaster.pid naming a PID that is now another process.
    fields = [os.getpid(), pgdata, int(time.time()), 5432, pgdata, "", "0 0", "ready   "]
    (pgdata / "postmaster.pid").write_text("".join(f"{field}\n" for field in fields))

    started = time.monotonic()
    server = DatabaseServer.start(settings)
    assert time.monotonic() - started < 8  # no 10 s wait for a server that is not there
    assert _pg_processes(pgdata)
    server.stop()
    assert not _pg_processes(pgdata)  # the last live user stopped it


async def test_an_external_database_restarted_by_its_operator_is_reconnected(
    settings: Settings, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    database = DatabaseServer.start(DatabaseSettings(data_dir=tmp_path))  # "external": not ours to restart
    try:
        external = msgspec.structs.replace(settings, database=DatabaseSettings(database_url=database.dsn))
        async with serving(external) as base_url:
            status, first, _ = await _post(http, base_url)
            assert status == 201
            postmaster = _postmaster(tmp_path / "postgres")
            postmaster.send_signal(signal.SIGKILL)
            for _ in range(2):  # every pooled connection broke: each answers 503, none 500
                status, body, headers = await _post(http, base_url)
                assert status == 503 and body["error"]["code"] == "store_unavailable", body
                assert int(headers["Retry-After"]) >= 1
            async with http.get(f"{base_url}/ready") as resp:
                assert resp.status == 503

            await asyncio.to_thread(postmaster.wait, 10)
            await asyncio.to_thread(database.restart)  # the operator brings it back
            status, body, _ = await _post(http, base_url)  # dupdetect was not restarted
            assert status == 201, body
            async with http.get(f"{base_url}/duplicates/{body['request_id']}") as resp:
                found = (await resp.json())["images"][0]["duplicates"]
            assert [d["request_id"] for d in found] == [first["request_id"]]
    finally:
        database.stop()


def test_the_embedded_socket_is_private_and_a_data_dir_too_long_for_it_is_refused(tmp_path: Path) -> None:
    server = DatabaseServer.start(DatabaseSettings(data_dir=tmp_path))
    try:
        pgdata = tmp_path / "postgres"
        assert f"host={pgdata}" in server.dsn  # the socket sits in the data folder...
        assert pgdata.stat().st_mode & 0o077 == 0  # ...which only the database's user can enter
    finally:
        server.stop()

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with pytest.raises(DatabaseError, match="too long for the embedded PostgreSQL's socket"):
        DatabaseServer.start(DatabaseSettings(data_dir=deep))
    assert not (deep / "postgres").exists()  # refused before anything was created
