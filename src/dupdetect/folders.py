"""Folders of photos: ``dupdetect ingest DIR`` (resumable, to a running service or in-process)
and ``dupdetect scan DIR --report report.html`` (duplicate groups as an offline page)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import shutil
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from dupdetect.decode import sniff_format
from dupdetect.ingest import NoValidImages, prepare
from dupdetect.intake import Item
from dupdetect.runtime import Runtime
from dupdetect.store.base import DEFAULT_COLLECTION, Pair, ReviewStore, StoredImage, VectorStore
from dupdetect.store.pgvector import PgVectorStore


def image_files(folder: Path) -> Iterator[Path]:
    """Every file under ``folder`` whose first bytes say it is an image we read, in a stable order."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            with path.open("rb") as handle:
                if sniff_format(handle.read(32)) is not None:
                    yield path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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


# (file name, bytes) pairs in; the service's POST /images answer out.
Sender = Callable[[list[tuple[str, bytes]]], Awaitable[dict[str, Any]]]
Lookup = Callable[[list[str]], Awaitable[dict[str, set[str | None]]]]
"""SHA-256s in; for those stored, the names they are stored under."""


async def ingest_folder(
    folder: Path, files: list[Path], *, send: Sender, known: Lookup, batch: int, report: IngestReport | None = None
) -> IngestReport:
    """Send each of ``files`` (under ``folder``, which names them) not stored yet under its name,
    ``batch`` files a request. A byte-identical copy under another name is sent: it is stored
    and paired with the original (``exact``), as anyone running a duplicate finder expects."""
    report = report or IngestReport()  # the caller's, to report what was done if interrupted
    progress = Progress(len(files), "ingest")
    for start in range(0, len(files), batch):
        chunk = files[start : start + batch]
        hashes = [sha256_of(path) for path in chunk]
        stored = await known(hashes)
        todo = [
            (path, digest) for path, digest in zip(chunk, hashes, strict=True)
            if str(path.relative_to(folder)) not in stored.get(digest, ())
        ]
        report.skipped += len(chunk) - len(todo)
        if todo:
            answer = await send([(str(path.relative_to(folder)), path.read_bytes()) for path, _ in todo])
            for item in answer.get("items", []):
                name = str(todo[item["index"]][0].relative_to(folder))
                if "error" in item:
                    report.failed.append(f"{name}: {item['error']['message']}")
                else:
                    report.added += 1
                    report.duplicates += item.get("duplicates", 0)
            if "request_id" not in answer and "error" in answer and not answer["error"].get("details"):
                report.failed += [f"{path.relative_to(folder)}: {answer['error']['message']}" for path, _ in todo]
        progress.advance(len(chunk), f"added {report.added}  skipped {report.skipped}  failed {len(report.failed)}")
    return report


def http_client(base_url: str, session: aiohttp.ClientSession, api_key: str | None = None) -> tuple[Sender, Lookup]:
    """Talk to a running ``dupdetect serve`` (with the key of a collection when it needs one)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def send(files: list[tuple[str, bytes]]) -> dict[str, Any]:
        form = aiohttp.FormData(quote_fields=False)  # names as they are (UTF-8), not percent-encoded
        for name, payload in files:
            form.add_field("files", payload, filename=name)
        async with session.post(f"{base_url}/images", data=form, headers=headers) as response:
            answer: dict[str, Any] = await response.json()
            return answer

    async def known(hashes: list[str]) -> dict[str, set[str | None]]:
        async with session.post(f"{base_url}/images/known", json={"sha256": hashes}, headers=headers) as response:
            response.raise_for_status()
            return {digest: set(names) for digest, names in (await response.json())["filenames"].items()}

    return send, known


def local_client(runtime: Runtime, store: VectorStore) -> tuple[Sender, Lookup]:
    """The bulk path, in this process (no server needed): each batch is stored as it is
    embedded, without searching (COPY, request left unsettled); :func:`find_pairs` then finds
    every pair in one batched k-NN pass."""

    async def send(files: list[tuple[str, bytes]]) -> dict[str, Any]:
        digests = [hashlib.sha256(payload).hexdigest() for _, payload in files]
        # Byte-identical copies of stored files (pgvector) take the stored vector: no decoding, no model.
        stored = await store.stored_names(digests) if isinstance(store, PgVectorStore) else {}
        copies = [(i, name, digest) for i, ((name, _), digest) in enumerate(zip(files, digests, strict=True))
                  if digest in stored]
        answer: dict[str, Any] = {"items": [{"index": i} for i, _, _ in copies]}
        if copies:
            assert isinstance(store, PgVectorStore)
            await store.add_copies(uuid.uuid4(), copies)
        items = [
            Item(index=i, filename=name, data=payload)
            for i, (name, payload) in enumerate(files) if digests[i] not in stored
        ]
        if not items:
            return answer
        try:
            images, outcomes = await prepare(items, pipeline=runtime.pipeline, fetcher=runtime.fetcher)
        except NoValidImages as exc:
            images, outcomes = [], exc.outcomes
        answer["items"] += [
            {"index": o.index, "error": {"message": o.error.message}} if o.error else {"index": o.index}
            for o in outcomes
        ]
        if images:
            request_id = uuid.uuid4()
            await store.add_request(request_id, len(items), images, [], model=runtime.pipeline.model_name)
            answer["request_id"] = str(request_id)
        return answer

    async def known(hashes: list[str]) -> dict[str, set[str | None]]:
        return await store.stored_names(hashes)

    return send, known


BULK_INDEX_ROWS = 100_000
"""Below this many stored images, a folder larger than the table is loaded without the HNSW
index, which is then built in one parallel pass (faster than inserting row by row)."""


async def ingest_folder_locally(
    folder: Path, runtime: Runtime, *, batch: int, collection: str = DEFAULT_COLLECTION,
    report: IngestReport | None = None,
) -> IngestReport:
    """``dupdetect ingest DIR`` / ``scan DIR`` in-process: bulk load, then one k-NN pass.
    Interrupted, it resumes: stored files are skipped by SHA-256, unsettled requests searched."""
    store = runtime.store.scoped(collection)
    files = list(image_files(folder))
    send, known = local_client(runtime, store)
    bulk: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()
    if isinstance(store, PgVectorStore):
        stored = await store.image_count()
        if stored < BULK_INDEX_ROWS and stored < len(files):
            bulk = store.bulk_load()
    async with bulk:
        report = await ingest_folder(folder, files, send=send, known=known, batch=batch, report=report)
    report.duplicates = await find_pairs(runtime, report.added)
    return report


async def find_pairs(runtime: Runtime, images: int) -> int:
    """The k-NN pass over every unsettled request: pairs found."""
    progress = Progress(images, "duplicates")
    _, pairs = await runtime.images.settle_pending(older_than_s=0, progress=lambda done: progress.advance(done))
    return pairs


@dataclass
class ScanGroup:
    """A best copy (the keeper) and its direct duplicates, each with the pair that joins them."""

    members: list[StoredImage]
    pairs: list[Pair]
    keeper: StoredImage
    thumbnails: dict[uuid.UUID, bytes | None]


async def scan_groups(store: ReviewStore) -> list[ScanGroup]:
    found = []
    for group in await store.groups():
        members = [m.image for m in group.members]
        found.append(ScanGroup(
            members=members,
            pairs=[
                Pair(image_id=m.image.id, duplicate_id=group.keep.id, similarity=m.similarity or 0.0, kind=m.joined_as,
                     matched_points=m.matched_points)
                for m in group.members if m.joined_as is not None
            ],
            keeper=group.keep,
            thumbnails={m.id: await store.thumbnail(m.id) for m in members},
        ))
    return found


def removable(folder: Path, groups: list[ScanGroup]) -> list[Path]:
    """Every copy but the suggested keeper of each group, as paths under ``folder``. An image
    that keeps a group of its own stays, even when it is a copy in another's group."""
    keepers = {g.keeper.id for g in groups}
    copies = {m.id: m for g in groups for m in g.members if m.id not in keepers and m.filename}
    return [folder / m.filename for m in copies.values() if m.filename]


def move_aside(folder: Path, paths: list[Path], target: Path) -> list[str]:
    """Move ``paths`` (under ``folder``) to the same relative places under ``target``; never
    overwrites. Returns what could not be moved, and why."""
    problems = []
    for path in paths:
        destination = target / path.relative_to(folder)
        if destination.exists():
            problems.append(f"{path.relative_to(folder)}: {destination} exists; left in place")
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.move(path, destination)
        except OSError as exc:
            problems.append(f"{path.relative_to(folder)}: {exc}")
    return problems


def scan_json(folder: Path, groups: list[ScanGroup], report: IngestReport) -> bytes:
    """``dupdetect scan --json``: groups, members, pairs with kind and similarity, the keeper."""
    def name(image_id: uuid.UUID, group: ScanGroup) -> str | None:
        return next(m.filename for m in group.members if m.id == image_id)

    return msgspec.json.format(msgspec.json.encode({
        "folder": str(folder),
        "images": report.added + report.skipped,
        "failed": report.failed,
        "groups": [
            {
                "keep": group.keeper.filename,
                "members": [
                    {"file": m.filename, "width": m.width, "height": m.height, "format": m.format,
                     "bytes": m.byte_size, "sha256": m.sha256}
                    for m in group.members
                ],
                "pairs": [
                    {"a": name(p.image_id, group), "b": name(p.duplicate_id, group), "kind": p.kind,
                     "similarity": round(p.similarity, 4)}
                    for p in group.pairs
                ],
            }
            for group in groups
        ],
    }), indent=2)


def report_html(folder: Path, groups: list[ScanGroup]) -> str:
    """An offline page: each group's images as embedded thumbnails, the copy to keep, its pairs."""
    blocks = []
    for number, group in enumerate(groups, 1):
        figures = "".join(
            "<figure>"
            + (f'<img src="data:image/jpeg;base64,{base64.b64encode(thumb).decode()}" alt="">'
               if (thumb := group.thumbnails.get(m.id)) else "")
            + f"<figcaption>{'<b>keep</b> ' if m.id == group.keeper.id else ''}{html.escape(m.filename or '')}"
            + f"<br><small>{m.width}×{m.height} {m.format}, {m.byte_size:,} bytes</small></figcaption></figure>"
            for m in group.members
        )
        names = {m.id: m.filename or "" for m in group.members}
        pairs = "".join(
            f"<li>{html.escape(names[p.image_id])} ↔ {html.escape(names[p.duplicate_id])}:"
            f" {p.kind.replace('_', ' ')} {p.similarity:.3f}</li>"
            for p in group.pairs
        )
        blocks.append(
            f"<section><h2>Group {number}: {len(group.members)} images</h2><div>{figures}</div><ul>{pairs}</ul></section>"
        )
    body = "".join(blocks) or "<p>No duplicates found.</p>"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>dupdetect scan</title><style>"
        "body{font:14px system-ui,sans-serif;margin:24px;background:#f5f6f8}"
        "section{background:#fff;border-radius:8px;padding:12px;margin:12px 0}"
        "section div{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;width:180px}"
        "img{width:180px;height:135px;object-fit:contain;background:#e9ecf2}"
        "figcaption{word-break:break-all;font-size:12px}ul{font-size:12px;color:#4a5568}</style></head><body>"
        f"<h1>Duplicates in {html.escape(str(folder))}</h1><p>{len(groups)} groups</p>{body}</body></html>"
    )
