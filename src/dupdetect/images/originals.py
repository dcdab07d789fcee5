"""Original files on disk: their SHA-256 (how stored images and files are matched), and a
stored image's original under a folder, only when its bytes are the ones stored."""

from __future__ import annotations

import hashlib
from pathlib import Path

from dupdetect.store.base import StoredImage


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def original_bytes(root: Path, image: StoredImage) -> bytes | None:
    """The file named as ``image`` was stored, under ``root`` and nowhere else, with its bytes."""
    path = (root / (image.filename or "")).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file() or sha256_of(path) != image.sha256:
        return None
    return path.read_bytes()
