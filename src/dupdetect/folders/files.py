"""Files on disk: the one folder walker and the one SHA-256 of a file, for every command."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from dupdetect.embedding.decode import sniff_format


def image_files(folder: Path) -> Iterator[Path]:
    """Every file under ``folder`` whose first bytes say it is an image we read, in a stable
    order; hidden files are left out."""
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


def images_by_sha256(folder: Path) -> dict[str, Path]:
    """The images under ``folder`` by content (``dupdetect reembed`` finds originals this way)."""
    found: dict[str, Path] = {}
    for path in image_files(folder):
        found.setdefault(sha256_of(path), path)
    return found
