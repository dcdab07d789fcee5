"""``dupdetect scan DIR``: the duplicate groups of a folder as an offline page, JSON, a list of
removable copies, or copies moved aside."""

from __future__ import annotations

import base64
import html
import os
import shlex
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgspec

from dupdetect.errors import NotFound
from dupdetect.folders.ingest import IngestReport
from dupdetect.images.service import ImageService
from dupdetect.review.grouping import redundant
from dupdetect.review.keeper import DEFAULT_POLICY, KeeperPolicy, has_camera
from dupdetect.review.service import ReviewService
from dupdetect.store.base import DuplicateGroup, StoredImage


@dataclass
class ScanGroup:
    """A group (the keeper first) with the thumbnails the page shows."""

    group: DuplicateGroup
    thumbnails: dict[uuid.UUID, bytes | None]

    @property
    def keeper(self) -> StoredImage:
        return self.group.keep

    @property
    def members(self) -> list[StoredImage]:
        return [m.image for m in self.group.members]


async def _thumbnail(images: ImageService, image_id: uuid.UUID) -> bytes | None:
    try:
        return await images.thumbnail(image_id)
    except NotFound:  # none kept for it: the page shows its name only
        return None


async def scan_groups(images: ImageService, policy: KeeperPolicy = DEFAULT_POLICY) -> list[ScanGroup]:
    """Every group of the collection, the keeper of each chosen by ``policy``, with thumbnails."""
    found = await ReviewService.of(images).groups(policy=policy)
    return [
        ScanGroup(group=group, thumbnails={m.image.id: await _thumbnail(images, m.image.id) for m in group.members})
        for group in found.groups
    ]


def removable(folder: Path, groups: list[ScanGroup], policy: KeeperPolicy = DEFAULT_POLICY) -> list[Path]:
    """Every copy but the keepers, as paths under ``folder``, each once: one pass of "keep the
    best, trash the rest" leaves one file per picture. A keeper is never listed, even when it
    is a copy in another group (a collage holds two photos), nor a file in a reference folder."""
    stored = [g.group for g in groups]
    return [folder / image.filename for image in redundant(stored, stored, policy) if image.filename]


def trash_list(paths: list[Path], *, null: bool) -> tuple[bytes, list[Path]]:
    """The trash list's bytes: NUL-separated paths, or one shell-quoted path a line, where a
    name holding a line break is left out (returned) rather than split in two."""
    if null:
        return b"".join(os.fsencode(path) + b"\0" for path in paths), []
    listed = [path for path in paths if "\n" not in str(path) and "\r" not in str(path)]
    text = "".join(f"{shlex.quote(str(path))}\n" for path in listed)
    return text.encode("utf-8", "surrogateescape"), [path for path in paths if path not in listed]


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

    return msgspec.json.format(
        msgspec.json.encode(
            {
                "folder": str(folder),
                "images": report.added + report.skipped,
                "failed": report.failed,
                "groups": [
                    {
                        "keep": group.keeper.filename,
                        "keep_reason": group.group.reason,
                        "members": [
                            {
                                "file": m.filename,
                                "width": m.width,
                                "height": m.height,
                                "format": m.format,
                                "bytes": m.byte_size,
                                "sha256": m.sha256,
                                "jpeg_quality": m.jpeg_quality,
                                "artefacts": m.artefacts,
                                "camera": has_camera(m),
                            }
                            for m in group.members
                        ],
                        "pairs": [
                            {
                                "a": m.image.filename,
                                "b": name(m.via, group),
                                "kind": m.joined_as,
                                "similarity": round(m.similarity or 0.0, 4),
                                "matched_points": m.matched_points,
                            }
                            for m in group.group.members
                            if m.via is not None
                        ],
                    }
                    for group in groups
                ],
            }
        ),
        indent=2,
    )


def report_html(folder: Path, groups: list[ScanGroup]) -> str:
    """An offline page: each group's images as embedded thumbnails, the copy to keep, its pairs."""
    blocks = []
    for number, group in enumerate(groups, 1):
        figures = "".join(
            "<figure>"
            + (
                f'<img src="data:image/jpeg;base64,{base64.b64encode(thumb).decode()}" alt="">'
                if (thumb := group.thumbnails.get(m.id))
                else ""
            )
            + f"<figcaption>{'<b>keep</b> ' if m.id == group.keeper.id else ''}{html.escape(m.filename or '')}"
            + f"<br><small>{m.width}×{m.height} {m.format}, {m.byte_size:,} bytes</small></figcaption></figure>"
            for m in group.members
        )
        names = {m.id: m.filename or "" for m in group.members}
        pairs = "".join(
            f"<li>{html.escape(names[m.image.id])} ↔ {html.escape(names[m.via])}:"
            f" {(m.joined_as or '').replace('_', ' ')} {m.similarity or 0:.3f}</li>"
            for m in group.group.members
            if m.via is not None
        )
        blocks.append(
            f"<section><h2>Group {number}: {len(group.members)} images</h2><p>{html.escape(group.group.reason)}</p>"
            f"<div>{figures}</div><ul>{pairs}</ul></section>"
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
