"""``dupdetect scan DIR``: the duplicate groups of a folder as an offline page, JSON, a list of
removable copies, or copies moved aside."""

from __future__ import annotations

import base64
import html
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgspec

from dupdetect.errors import NotFound
from dupdetect.folders.ingest import IngestReport
from dupdetect.images.service import ImageService
from dupdetect.store.base import Pair, StoredImage


@dataclass
class ScanGroup:
    """A best copy (the keeper) and its direct duplicates, each with the pair that joins them."""

    members: list[StoredImage]
    pairs: list[Pair]
    keeper: StoredImage
    thumbnails: dict[uuid.UUID, bytes | None]


async def _thumbnail(images: ImageService, image_id: uuid.UUID) -> bytes | None:
    try:
        return await images.thumbnail(image_id)
    except NotFound:  # none kept for it: the page shows its name only
        return None


async def scan_groups(images: ImageService) -> list[ScanGroup]:
    """Every group of the collection, with the thumbnails the page shows."""
    groups, _ = await images.review().groups()
    found = []
    for group in groups:
        members = [m.image for m in group.members]
        found.append(ScanGroup(
            members=members,
            pairs=[
                Pair(image_id=m.image.id, duplicate_id=group.keep.id, similarity=m.similarity or 0.0, kind=m.joined_as,
                     matched_points=m.matched_points)
                for m in group.members if m.joined_as is not None
            ],
            keeper=group.keep,
            thumbnails={m.id: await _thumbnail(images, m.id) for m in members},
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
