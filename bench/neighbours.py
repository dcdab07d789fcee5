"""Noisy neighbours: one collection sends the worst it can while another uploads ordinary
photos; the victim's latency against a quiet run.

    python bench/neighbours.py [--seconds 30] [--model efficientnet_lite0]

``dupdetect serve`` runs in its own process (auth on, embedded PostgreSQL in a temporary data
dir, loopback). The victim uploads one photo per request, one request at a time, first alone
(quiet), then while the noisy collection keeps sending each of these, over and over, and then
all of them at once:

- JPEG scan bombs (a progressive JPEG with thousands of tiny scans appended);
- costly PNGs (4800×4800, just inside the decode budget: about the slowest image the limits allow);
- JSON bodies of 16 million empty items (47 MB);
- requests of 100 URLs to a host that answers one byte a second;
- requests with keys forged in the victim's key id (from another loopback address);
- bodies dripped a byte at a time.

The noisy side runs in its own process at the lowest priority (nice 19): on one machine its
client work would otherwise take the CPU an attacker elsewhere spends on their own machine.

Target (issue 22): the victim's p99 at most twice the quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.embed import table  # noqa: E402
from bench.soak import _jpeg, _texture  # noqa: E402
from tests.conftest import web_server  # noqa: E402
from tests.processes import DUPDETECT, cli_env, free_port, wait_ready  # noqa: E402


def _victim_photo(n: int) -> bytes:
    """A different picture each time, of a photo's size, that duplicates nothing: the victim's
    own work stays the same from the first run to the last, whatever it stored before."""
    return _jpeg(_texture(np.random.default_rng(n)))


def _scan_bomb() -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (2048, 2048), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", progressive=True, quality=50)
    data = buffer.getvalue()
    last = data[data.rindex(b"\xff\xda") : -2]
    return data[:-2] + last[: min(len(last), 64)] * 3000 + b"\xff\xd9"


def _costly_png() -> bytes:
    """4800×4800 RGB gradients: a small file, just inside the decode budget, ~0.5 s to decode."""
    side = 4800
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    grey = (ramp[None, :] * 0.7 + ramp[:, None] * 0.3).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.stack([grey, grey[::-1], grey.T], axis=2)).save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


class Service:
    def __init__(self, data_dir: Path, model: str, slow_host: str) -> None:
        self.port = free_port()
        self.env = cli_env(
            DUPDETECT_DATA_DIR=str(data_dir),
            DUPDETECT_MODEL=model,
            DUPDETECT_AUTH="on",
            DUPDETECT_ALLOWED_HOSTS="127.0.0.1",
            DUPDETECT_FETCH_ALLOW_NETWORKS=slow_host,
        )
        self.base_url = f"http://127.0.0.1:{self.port}"

    def key(self, collection: str) -> str:
        made = subprocess.run(
            [*DUPDETECT, "keys", "create", "--collection", collection],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return made.stdout.strip().splitlines()[-1]

    @contextlib.contextmanager
    def running(self, log: Path) -> Any:
        with log.open("w") as out:
            proc = subprocess.Popen(
                [*DUPDETECT, "serve", "--port", str(self.port)], env=self.env, stdout=out, stderr=out, text=True
            )
            try:
                wait_ready(proc, self.port, timeout=300)
                yield
            finally:
                proc.terminate()
                proc.wait(60)


async def _victim(http: aiohttp.ClientSession, service: Service, key: str, seconds: float) -> tuple[list[float], Counter[int]]:
    latencies, statuses, n = [], Counter[int](), 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        form = aiohttp.FormData()
        form.add_field("files", _victim_photo(n), filename=f"victim-{n}.jpg")
        n += 1
        started = time.perf_counter()
        async with http.post(f"{service.base_url}/images", data=form, headers={"X-API-Key": key}) as resp:
            await resp.read()
        latencies.append(time.perf_counter() - started)
        statuses[resp.status] += 1
    return latencies, statuses


async def _forever(attack: Callable[[], Coroutine[Any, Any, int]], sent: Counter[str], name: str) -> None:
    while True:
        try:
            sent[f"{name} {await attack()}"] += 1
        except (aiohttp.ClientError, OSError, TimeoutError):
            sent[f"{name} dropped"] += 1
            await asyncio.sleep(0.05)


async def _attack(base_url: str, key: str, victim_key: str, slow_host: str, only: str, seconds: float) -> None:
    """The noisy collection, in its own process (its client work must not slow the victim's
    client): sends ``only`` (or everything, ``all``) for ``seconds``, then prints what it was
    answered (JSON) and exits."""
    port = int(base_url.rsplit(":", 1)[1])
    bomb, png = _scan_bomb(), _costly_png()
    empty_items = b'{"images": [' + b"{}," * 16_000_000 + b"{}]}"
    urls = {"images": [{"url": f"{slow_host}/{n}.jpg"} for n in range(100)]}
    forged = victim_key[: len("ddk_") + 12] + "_" + "x" * 43
    sent: Counter[str] = Counter()
    headers = {"X-API-Key": key}
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
    elsewhere = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))

    async def upload(files: list[tuple[str, bytes]]) -> int:
        form = aiohttp.FormData()
        for name, data in files:
            form.add_field("files", data, filename=name)
        async with session.post(f"{base_url}/images", data=form, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def json_body(body: bytes) -> int:
        async with session.post(f"{base_url}/images", data=body, headers={**headers, "Content-Type": "application/json"}) as resp:
            await resp.read()
            return resp.status

    async def url_request() -> int:
        async with session.post(f"{base_url}/images", json=urls, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def forge() -> int:
        async with elsewhere.get(f"{base_url}/groups", headers={"X-API-Key": forged}) as resp:
            await resp.read()
            return resp.status

    async def drip() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /images HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n".encode()
        )
        while not reader.at_eof():
            writer.write(b" ")
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(reader.read(200), timeout=1.0)
                writer.close()
                return int(answer.split(b" ")[1]) if answer else 0
        return 0

    attacks = [
        ("scan bombs", lambda: upload([(f"bomb{i}.jpg", bomb) for i in range(20)])),
        ("costly PNGs", lambda: upload([(f"big{i}.png", png) for i in range(4)])),
        ("costly PNGs", lambda: upload([(f"big{i}.png", png) for i in range(4)])),
        ("costly PNGs", lambda: upload([(f"big{i}.png", png) for i in range(4)])),
        ("16M items", lambda: json_body(empty_items)),
        ("100 slow URLs", url_request),
        ("100 slow URLs", url_request),
        ("forged keys", forge),
        ("drip", drip),
    ]
    tasks = [asyncio.create_task(_forever(attack, sent, name)) for name, attack in attacks if only in ("all", name)]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=5)
    print(json.dumps(dict(sent)), flush=True)
    os._exit(0)  # without waiting for cancelled 47 MB uploads and their sessions to wind down


def _statuses(counts: Counter[int]) -> str:
    return ", ".join(f"{status}: {n}" for status, n in sorted(counts.items()))


def _quantiles(latencies: list[float]) -> tuple[float, float, float]:
    """p50, p95 and p99 in ms."""
    ordered = sorted(latencies)
    at = [ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] for q in (0.5, 0.95, 0.99)]
    return at[0] * 1000, at[1] * 1000, at[2] * 1000


def _row(name: str, latencies: list[float], statuses: Counter[int], quiet: tuple[float, float, float] | None) -> list[str]:
    found = _quantiles(latencies)
    ratios = [f"{a / b:.2f}×" for a, b in zip(found, quiet, strict=True)] if quiet else ["", "", ""]
    return [name, str(len(latencies)), _statuses(statuses), *(f"{v:.0f}" for v in found), *ratios]


async def run(seconds: float, model: str) -> None:
    async def one_byte_a_second(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the service gave up on it
            for _ in range(600):
                await response.write(b"\xff")
                await asyncio.sleep(1)
        return response

    app = web.Application()
    app.router.add_get("/{n}.jpg", one_byte_a_second)
    rows, sent_all = [], Counter[str]()
    async with web_server(app) as slow_host:
        with tempfile.TemporaryDirectory() as tmp:
            service = Service(Path(tmp) / "data", model, "127.0.0.0/8")
            victim_key, noisy_key = service.key("victim"), service.key("noisy")
            with service.running(Path(tmp) / "serve.log"):
                async with aiohttp.ClientSession() as http:
                    await _victim(http, service, victim_key, 5)  # warm-up
                    quiet, statuses = await _victim(http, service, victim_key, seconds)
                    baseline = _quantiles(quiet)
                    rows.append(_row("quiet", quiet, statuses, None))
                    for only in [*ATTACKS, "all"]:
                        noisy_side = subprocess.Popen(
                            [
                                sys.executable,
                                __file__,
                                "--attack",
                                only,
                                "--seconds",
                                str(seconds + PILE_UP_S),
                                "--base-url",
                                service.base_url,
                                "--key",
                                noisy_key,
                                "--victim-key",
                                victim_key,
                                "--slow-host",
                                slow_host,
                            ],
                            stdout=subprocess.PIPE,
                            text=True,
                        )
                        await asyncio.sleep(PILE_UP_S)  # let the noise pile up before the victim starts
                        noisy, statuses = await _victim(http, service, victim_key, seconds)
                        answered, _ = await asyncio.to_thread(noisy_side.communicate)
                        await asyncio.sleep(2)  # what the noise left running winds down
                        if only == "all":
                            sent_all = Counter(json.loads(answered))
                        rows.append(_row("all of them at once" if only == "all" else only, noisy, statuses, baseline))
                    again, statuses = await _victim(http, service, victim_key, seconds)  # the noise floor
                    rows.append(_row("quiet again", again, statuses, baseline))
    table(
        f"Victim: one picture per request, one request at a time, {seconds:.0f} s per run ({model}, {os.cpu_count()} CPUs)",
        ["noisy neighbour sends", "requests", "statuses", "p50 ms", "p95 ms", "p99 ms", "p50 ×", "p95 ×", "p99 ×"],
        rows,
    )
    table(
        "What the noisy collection was answered in the last run (attack status: requests)",
        ["attack", "answered"],
        [[name, str(count)] for name, count in sorted(sent_all.items())],
    )


ATTACKS = ("scan bombs", "costly PNGs", "16M items", "100 slow URLs", "forged keys", "drip")
PILE_UP_S = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each run")
    parser.add_argument("--model", default="efficientnet_lite0")
    noisy = parser.add_argument_group("the noisy side (run by the bench itself, in its own process)")
    noisy.add_argument("--attack", choices=[*ATTACKS, "all"])
    for option in ("--base-url", "--key", "--victim-key", "--slow-host"):
        noisy.add_argument(option)
    args = parser.parse_args()
    if args.attack:
        os.nice(19)  # the attacker's own CPU is not the service's: on one machine, it yields
        asyncio.run(_attack(args.base_url, args.key, args.victim_key, args.slow_host, args.attack, args.seconds))
        return  # (not reached: the noisy side exits from inside)
    asyncio.run(run(args.seconds, args.model))


if __name__ == "__main__":
    main()
