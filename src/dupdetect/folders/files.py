"""Files on disk: the one folder walker and the one SHA-256 of a file, for every command."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from dupdetect.embedding.decode import sniff_format
from dupdetect.errors import OperatorError
from dupdetect.images.originals import sha256_of

SYSTEM_FOLDERS = frozenset({"@eaDir", "#recycle", "#snapshot", "$RECYCLE.BIN", "System Volume Information", "lost+found"})
"""Folders NAS boxes and operating systems fill with thumbnails and deleted files: skipped
like hidden ones."""


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in SYSTEM_FOLDERS


def image_files(folder: Path, *, exclude: Iterable[str] = (), hidden: bool = False, skip: Iterable[Path] = ()) -> Iterator[Path]:
    """Every file under ``folder`` whose first bytes say it is an image we read, in a stable
    order. Left out: hidden files and folders (``.thumbnails``, ``.Trash``, ``@eaDir``) unless
    ``hidden``; paths matching an ``exclude`` glob (matched against the path under ``folder``
    and against each name); the folders in ``skip`` (where ``--move-to`` puts copies)."""
    patterns = list(exclude)
    skipped = {p.resolve() for p in skip}

    def excluded(relative: str, name: str) -> bool:
        return any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(name, p) for p in patterns)

    for top, dirs, names in os.walk(folder):
        here = Path(top)
        dirs[:] = sorted(
            d
            for d in dirs
            if (hidden or not _hidden(d))
            and (here / d).resolve() not in skipped
            and not excluded(str((here / d).relative_to(folder)), d)
        )
        for name in sorted(names):
            path = here / name
            if (not hidden and _hidden(name)) or excluded(str(path.relative_to(folder)), name) or not path.is_file():
                continue
            with path.open("rb") as handle:
                if sniff_format(handle.read(32)) is not None:
                    yield path


def existing_folder(path: Path) -> Path:
    """``path`` if it is a folder; else the one-line error a command line gives."""
    if not path.exists():
        raise OperatorError(f"{path}: no such folder")
    if not path.is_dir():
        raise OperatorError(f"{path}: not a folder")
    return path


def stored_name(path: Path, root: Path) -> str:
    """The name a file is stored under: its path under ``root``, so that a folder and its parent
    scanned under the same root agree on every file."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        raise OperatorError(f"{path} is not under --root {root}") from None


def images_by_sha256(folder: Path) -> dict[str, Path]:
    """The images under ``folder`` by content (``dupdetect reembed`` finds originals this way)."""
    found: dict[str, Path] = {}
    for path in image_files(folder):
        found.setdefault(sha256_of(path), path)
    return found
