"""``dupdetect ingest DIR``: a folder of photos, resumable, sent to a running service or stored
in-process (``scan`` uses the in-process path too)."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec

from dupdetect.api.errors import ErrorDetail, ErrorResponse
from dupdetect.error_codes import Code
from dupdetect.folders.files import stored_name
from dupdetect.images.body import Item, ItemError
from dupdetect.images.originals import sha256_of
from dupdetect.images.schemas import IngestItem, IngestResponse, KnownFiles
from dupdetect.images.service import ImageService

PAIR_PASS_AT_ONCE = 2
"""Requests a folder's k-NN pass works on together: one's search in the database overlaps the
other's geometric checks, so the pass uses two cores instead of one."""


class Progress:
    """One line on stderr, rewritten in place: done/total, what happened, rate and ETA."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done, self.started = total, label, 0, time.monotonic()

    def advance(self, count: int, detail: str = "") -> None:
        self.done += count
        width = 30
        filled = width * min(self.done, self.total) // max(self.total, 1)
        rate = self.done / max(time.monotonic() - self.started, 1e-6)
        eta = max(self.total - self.done, 0) / rate if rate else 0.0
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
            f"  {detail}  {rate:.1f}/s  ETA {int(eta) // 60}:{int(eta) % 60:02d}"
        )
        sys.stderr.flush()
        if self.done >= self.total:
            sys.stderr.write("\n")


@dataclass
class IngestReport:
    added: int = 0
    skipped: int = 0
    duplicates: int = 0
    failed: list[str] = field(default_factory=list)


Sender = Callable[[list[tuple[str, bytes]]], Awaitable[list[IngestItem]]]
"""(file name, bytes) pairs in; each file's outcome, by its position, out (as POST /images reports it)."""
Lookup = Callable[[list[str]], Awaitable[dict[str, set[str | None]]]]
"""SHA-256s in; for those stored, the names they are stored under."""


async def ingest_folder(
    root: Path, files: list[Path], *, send: Sender, known: Lookup, batch: int, report: IngestReport | None = None
) -> IngestReport:
    """Send each of ``files`` (under ``root``, which names them) not stored yet under its name,
    ``batch`` files a request. A byte-identical copy under another name is sent: it is stored
    and paired with the original (``exact``), as anyone running a duplicate finder expects."""
    report = report or IngestReport()  # the caller's, to report what was done if interrupted
    progress = Progress(len(files), "ingest")
    for start in range(0, len(files), batch):
        chunk = files[start : start + batch]
        names = [stored_name(path, root) for path in chunk]
        hashes = [sha256_of(path) for path in chunk]
        stored = await known(hashes)
        todo = [
            (name, path) for name, path, digest in zip(names, chunk, hashes, strict=True) if name not in stored.get(digest, ())
        ]
        report.skipped += len(chunk) - len(todo)
        if todo:
            for item in await send([(name, path.read_bytes()) for name, path in todo]):
                if item.error is not None:
                    report.failed.append(f"{todo[item.index][0]}: {item.error.message}")
                else:
                    report.added += 1
                    report.duplicates += item.duplicates or 0
        progress.advance(len(chunk), f"added {report.added}  skipped {report.skipped}  failed {len(report.failed)}")
    return report


def http_client(base_url: str, session: aiohttp.ClientSession, api_key: str | None = None) -> tuple[Sender, Lookup]:
    """Talk to a running ``dupdetect serve`` (with the key of a collection when it needs one)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def send(files: list[tuple[str, bytes]]) -> list[IngestItem]:
        form = aiohttp.FormData(quote_fields=False)  # names as they are (UTF-8), not percent-encoded
        for name, payload in files:
            form.add_field("files", payload, filename=name)
        async with session.post(f"{base_url}/images", data=form, headers=headers) as response:
            body, status = await response.read(), response.status
        if status < 300:
            return msgspec.json.decode(body, type=IngestResponse).items
        try:
            error = msgspec.json.decode(body, type=ErrorResponse).error
        except msgspec.DecodeError:  # not the service answering (a proxy, a crash page)
            error = ErrorDetail(code="http_error", message=f"HTTP {status} from {base_url}")
        if error.code == Code.NO_VALID_IMAGES:  # every file's own error
            return msgspec.convert(error.details, list[IngestItem])
        return [IngestItem(index=i, error=ItemError(error.code, error.message)) for i in range(len(files))]

    async def known(hashes: list[str]) -> dict[str, set[str | None]]:
        async with session.post(f"{base_url}/images/known", json={"sha256": hashes}, headers=headers) as response:
            response.raise_for_status()
            answer = msgspec.json.decode(await response.read(), type=KnownFiles)
        return {digest: set(names) for digest, names in answer.filenames.items()}

    return send, known


def local_client(images: ImageService) -> tuple[Sender, Lookup]:
    """The bulk path, in this process (no server needed): each batch is stored as it is
    embedded, without searching; :func:`find_pairs` then finds every pair in one k-NN pass."""

    async def send(files: list[tuple[str, bytes]]) -> list[IngestItem]:
        items = [Item(index=i, filename=name, data=payload) for i, (name, payload) in enumerate(files)]
        return [IngestItem.of(outcome) for outcome in await images.add_unsearched(items)]

    return send, images.stored_names


async def ingest_folder_locally(
    root: Path, files: list[Path], images: ImageService, *, batch: int, report: IngestReport | None = None
) -> IngestReport:
    """``dupdetect ingest DIR`` / ``scan DIR`` in-process: bulk load, then one k-NN pass.
    Interrupted, it resumes: stored files are skipped by SHA-256, unsettled requests searched."""
    send, known = local_client(images)
    async with images.bulk_load(len(files)):
        report = await ingest_folder(root, files, send=send, known=known, batch=batch, report=report)
    report.duplicates = await find_pairs(images, report.added)
    return report


async def find_pairs(images: ImageService, added: int) -> int:
    """The k-NN pass over every unsettled request: pairs found."""
    progress = Progress(added, "duplicates")
    _, pairs = await images.settle_pending(
        older_than_s=0, progress=lambda done: progress.advance(done), at_once=PAIR_PASS_AT_ONCE
    )
    return pairs
