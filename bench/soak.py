"""Soak under faults: concurrent clients upload and search while the database and the service
are killed; afterwards the database is checked against what every client was told.

    python bench/soak.py [--clients 4] [--faults 12] [--between 60] [--model efficientnet_lite0]

Loopback only: ``dupdetect serve`` runs in its own process with the embedded PostgreSQL in a
temporary data dir. Paced by what happens, not by the clock (a slow machine runs longer, it
does not test less): after every ``--between`` uploads answered 201, one fault, in turn:

- ``db-kill``: ``kill -9`` of the PostgreSQL postmaster; recovery = until ``/ready`` answers
  200 again, with no restart of dupdetect (target ≤ 10 s);
- ``service-kill``: ``kill -9`` of dupdetect, then a restart; recovery = restart until ready;
- ``sigterm``: SIGTERM while uploads run (they finish within the grace or are answered 503),
  then a restart; recovery = signal until ready again.

After the last fault, another ``--between`` uploads must succeed.

Every image is unique (random texture); some requests also carry a re-encoded, slightly
shrunk copy of an image the same client sent earlier, so pairs must be found. Afterwards the
requests still unsettled (cut off between commit and their concurrent check) are settled as
the service's sweeper would, then:

- ok: answered 201 and complete: every image stored with its vector, ``added`` right;
- failed cleanly: a JSON error (or no connection at all), and nothing of it stored;
- unanswered: the connection died with the service, or the database died during the commit
  (the 503 names the request); then all of it or nothing is stored;
- lost: answered 201 but missing; partial: stored but incomplete (images, vectors, or a pair
  between a copy and its stored original missing); unclean: a 500, or an error that is not JSON.
Pairs are checked for self-pairs and pairs stored in both directions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.embed import table  # noqa: E402
from dupdetect.database import DatabaseServer, create_pool  # noqa: E402
from dupdetect.images.duplicates import settle_pending  # noqa: E402
from dupdetect.images.rules import Rules  # noqa: E402
from dupdetect.settings import DatabaseSettings, DuplicateSettings  # noqa: E402
from dupdetect.store.pgvector import PgVectorStore  # noqa: E402
from tests.processes import DUPDETECT, cli_env, free_port, wait_ready  # noqa: E402

FAULTS = ("db-kill", "service-kill", "sigterm")
HANG_S = 600
"""Longest wait for uploads to succeed: only a broken service takes this long."""


@dataclass
class Sent:
    """One upload as its client saw it."""

    images: list[bytes]
    copies: dict[int, str] = field(default_factory=dict)
    """position in this request -> SHA-256 of the earlier image it copies."""
    outcome: str = "pending"  # ok | failed | unanswered | unclean
    request_id: str | None = None
    error: str = ""

    def hashes(self) -> list[str]:
        return [hashlib.sha256(image).hexdigest() for image in self.images]


@dataclass
class Fault:
    kind: str
    recovery_s: float


def _texture(rng: np.random.Generator) -> Image.Image:
    """A unique, smooth random image: distinct hashes and descriptors, realistic JPEG size."""
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((480, 360), Image.Resampling.BICUBIC)


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _copy_of(jpeg: bytes) -> bytes:
    with Image.open(io.BytesIO(jpeg)) as image:
        return _jpeg(image.resize((432, 324), Image.Resampling.BILINEAR), quality=75)


class Service:
    """``dupdetect serve`` as a process that the soak kills and restarts."""

    def __init__(self, data_dir: Path, model: str, log: Path) -> None:
        self.port = free_port()
        self.env = cli_env(
            DUPDETECT_DATA_DIR=str(data_dir),
            DUPDETECT_MODEL=model,
            DUPDETECT_SHUTDOWN_GRACE="3",
            DUPDETECT_RATE_LIMIT="0",  # four clients on one address: measure faults, not the limiter
        )
        self.data_dir = data_dir
        self.log = log
        self.proc: subprocess.Popen[str] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("a") as log:  # a file, not a pipe: nobody has to keep reading it
            self.proc = subprocess.Popen(
                [*DUPDETECT, "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        wait_ready(self.proc, self.port, timeout=180)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(60)

    def postmaster(self) -> psutil.Process:
        pgdata = str(self.data_dir / "postgres")
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if proc.info["name"] == "postgres" and "-D" in cmdline and pgdata in cmdline:
                return proc
        raise RuntimeError(f"no postmaster for {pgdata}")


async def _ready(http: aiohttp.ClientSession, service: Service, timeout: float) -> float:
    """Seconds until /ready answers 200 (after it noticed the fault: at most 2 s)."""
    started = time.monotonic()
    while time.monotonic() - started < 2 and await _is_ready(http, service):
        await asyncio.sleep(0.05)
    while time.monotonic() - started < timeout:
        if await _is_ready(http, service):
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise RuntimeError(f"not ready within {timeout:.0f} s")


async def _is_ready(http: aiohttp.ClientSession, service: Service) -> bool:
    try:
        async with http.get(f"{service.base_url}/ready", timeout=aiohttp.ClientTimeout(total=1)) as resp:
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _upload(http: aiohttp.ClientSession, service: Service, sent: Sent) -> None:
    form = aiohttp.FormData()
    for i, image in enumerate(sent.images):
        form.add_field("files", image, filename=f"{i}.jpg", content_type="image/jpeg")
    try:
        async with http.post(f"{service.base_url}/images", data=form) as resp:
            try:
                body = await resp.json()
            except aiohttp.ContentTypeError:
                sent.outcome = "unclean"
                return
            if resp.status == 201:
                sent.outcome, sent.request_id = "ok", body["request_id"]
            elif "error" not in body or resp.status == 500:  # a 500 is a bug, whatever its shape
                sent.outcome = "unclean"
            else:
                sent.error = f"{resp.status} {body['error']['code']}"
                # The database failed during the commit: the answer names the request to look up.
                sent.request_id = (body["error"].get("details") or {}).get("request_id")
                sent.outcome = "unanswered" if sent.request_id else "failed"
    except aiohttp.ClientConnectorError:
        sent.outcome = "failed"  # never connected: nothing was sent
    except (aiohttp.ClientError, TimeoutError):
        sent.outcome = "unanswered"


async def _client(
    n: int, http: aiohttp.ClientSession, service: Service, stop: asyncio.Event, log: list[Sent], searches: Counter[str]
) -> None:
    rng = np.random.default_rng(n)
    pick = random.Random(n)
    mine: list[bytes] = []
    while not stop.is_set():
        sent = Sent(images=[_jpeg(_texture(rng)) for _ in range(pick.randint(1, 4))])
        if mine and pick.random() < 0.5:
            original = mine.pop(pick.randrange(len(mine)))  # copied once: every upload stays unique
            sent.copies[len(sent.images)] = hashlib.sha256(original).hexdigest()
            sent.images.append(_copy_of(original))
        log.append(sent)
        await _upload(http, service, sent)
        if sent.outcome == "ok":
            mine.extend(image for i, image in enumerate(sent.images) if i not in sent.copies)
            try:
                async with http.get(f"{service.base_url}/duplicates/{sent.request_id}") as resp:
                    searches["ok" if resp.status == 200 else f"{resp.status}"] += 1
            except (aiohttp.ClientError, TimeoutError):
                searches["unanswered"] += 1
        else:
            await asyncio.sleep(0.2)


async def _after_uploads(log: list[Sent], count: int) -> None:
    """Until ``count`` uploads in all were answered 201 (a guard, not a measure, stops a hang)."""
    deadline = time.monotonic() + HANG_S
    while sum(sent.outcome == "ok" for sent in log) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} uploads succeeded in {HANG_S} s: see serve.log")
        await asyncio.sleep(0.05)


async def _faults(http: aiohttp.ClientSession, service: Service, log: list[Sent], *, count: int, between: int) -> list[Fault]:
    done: list[Fault] = []
    for n in range(count):
        await _after_uploads(log, (n + 1) * between)
        kind = FAULTS[n % len(FAULTS)]
        started = time.monotonic()
        if kind == "db-kill":
            service.postmaster().kill()
            recovery = await _ready(http, service, timeout=60)
        else:
            await asyncio.to_thread(service.stop, signal.SIGKILL if kind == "service-kill" else signal.SIGTERM)
            if kind == "service-kill":
                started = time.monotonic()
            await asyncio.to_thread(service.start)
            recovery = time.monotonic() - started
        print(f"  {kind}: ready again after {recovery:.1f} s", flush=True)
        done.append(Fault(kind, recovery))
    await _after_uploads(log, (count + 1) * between)
    return done


async def _settle_and_check(dsn: str, log: list[Sent]) -> tuple[Counter[str], int, list[str]]:
    """What is stored, request by request, against what its client was told."""
    pool = await create_pool(dsn, DatabaseSettings(), ef_search=100)
    problems: list[str] = []
    try:
        model = await pool.fetchval("SELECT model FROM images LIMIT 1")
        dims = await pool.fetchval("SELECT vector_dims(embedding) FROM images LIMIT 1")
        unsettled, _ = await settle_pending(
            PgVectorStore(pool, dims=dims), model=model, rules=Rules.from_settings(DuplicateSettings()), older_than_s=0
        )
        rows = await pool.fetch(
            "SELECT i.id, i.sha256, i.request_id, i.embedding IS NOT NULL AS has_vector, r.added"
            " FROM images i JOIN requests r ON r.id = i.request_id"
        )
        pairs = await pool.fetch("SELECT image_id, duplicate_id FROM duplicates")
        by_sha = {row["sha256"]: row for row in rows}
        paired = {(row["image_id"], row["duplicate_id"]) for row in pairs}
        for a, b in paired:
            if a == b:
                problems.append(f"self-pair {a}")
            if (b, a) in paired:
                problems.append(f"pair stored both ways {a} {b}")
        stored_requests = {row["request_id"] for row in rows}
        counts: Counter[str] = Counter()
        claimed: set[str] = set()
        for sent in log:
            hashes = sent.hashes()
            present = [h in by_sha for h in hashes]
            request_ids = {str(by_sha[h]["request_id"]) for h in hashes if h in by_sha}
            claimed |= request_ids
            complete = all(present) and len(request_ids) == 1 and all(by_sha[h]["has_vector"] for h in hashes)
            complete = complete and by_sha[hashes[0]]["added"] == len(hashes)
            if all(present) and not complete:
                problems.append(f"request {request_ids}: images without vectors, or `added` wrong")
            for position, original in sent.copies.items():
                if complete and original in by_sha:
                    a, b = by_sha[hashes[position]]["id"], by_sha[original]["id"]
                    if (a, b) not in paired and (b, a) not in paired:
                        complete = False
                        problems.append(f"copy {a} not paired with its original {b}")
            if sent.outcome == "ok":
                verdict = "ok" if complete and request_ids == {sent.request_id} else "partial" if any(present) else "lost"
            elif sent.outcome in ("failed", "unclean"):
                verdict = "partial" if any(present) else sent.outcome
            else:
                verdict = "unanswered" if complete or not any(present) else "partial"
            if verdict == "partial":
                problems.append(
                    f"{sent.outcome} request {sent.request_id or '?'} ({sent.error or 'no error'}):"
                    f" {sum(present)}/{len(hashes)} images stored,"
                    f" in {len(request_ids)} request(s)"
                )
            counts[verdict] += 1
        orphans = {str(r) for r in stored_requests} - claimed
        if orphans:
            problems.append(f"{len(orphans)} stored requests no client sent")
        return counts, unsettled, problems
    finally:
        await pool.close()


@dataclass
class Report:
    counts: Counter[str]
    faults: list[Fault]
    searches: Counter[str]
    unsettled: int
    problems: list[str]

    @property
    def clean(self) -> bool:
        return not (self.counts["lost"] or self.counts["partial"] or self.counts["unclean"] or self.problems)


async def soak(data_dir: Path, *, clients: int, faults: int, between: int, model: str) -> Report:
    """``faults`` faults in turn, each after ``between`` more uploads answered 201."""
    data_dir.mkdir(parents=True, exist_ok=True)
    service = Service(data_dir, model, data_dir / "serve.log")
    await asyncio.to_thread(service.start)
    log: list[Sent] = []
    searches: Counter[str] = Counter()
    stop = asyncio.Event()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            uploading = [asyncio.create_task(_client(n, http, service, stop, log, searches)) for n in range(clients)]
            try:
                done = await _faults(http, service, log, count=faults, between=between)
            finally:
                stop.set()
                await asyncio.gather(*uploading)
    finally:
        await asyncio.to_thread(service.stop)
    database = DatabaseServer.start(DatabaseSettings(data_dir=data_dir))
    try:
        counts, unsettled, problems = await _settle_and_check(database.dsn, log)
    finally:
        database.stop()
    return Report(counts, done, searches, unsettled, problems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--faults", type=int, default=12, help="faults in all, each kind in turn")
    parser.add_argument("--between", type=int, default=60, help="uploads answered 201 before each fault")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--keep", type=Path, help="use this (new) data dir and keep it, with serve.log")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        data_dir = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dupdetect-soak-")))
        started = time.monotonic()
        report = asyncio.run(soak(data_dir, clients=args.clients, faults=args.faults, between=args.between, model=args.model))
        minutes = (time.monotonic() - started) / 60
    counts = report.counts
    table(
        f"Uploads ({args.clients} clients, {minutes:.1f} min, a fault after every {args.between} uploads)",
        ["ok", "failed cleanly", "unanswered", "lost", "partial", "unclean", "settled afterwards", "searches ok"],
        [
            [str(counts[k]) for k in ("ok", "failed", "unanswered", "lost", "partial", "unclean")]
            + [str(report.unsettled), f"{report.searches['ok']}/{sum(report.searches.values())}"]
        ],
    )
    table("Faults", ["fault", "recovery (s)"], [[f.kind, f"{f.recovery_s:.1f}"] for f in report.faults])
    for problem in report.problems[:20]:
        print("problem:", problem)
    print("\nclean" if report.clean else "\nNOT CLEAN")
    sys.exit(0 if report.clean else 1)


if __name__ == "__main__":
    main()
