"""Atomic writes and checksums: nothing half-written is ever visible under its final name.

Shared by ``docid``, ``trie`` and ``dsi``. It lives in ``docid``, the lowest layer, because
every layer writes files and a layer may only import from itself and the layers below it
(``docid`` < ``trie`` < ``dsi``; tests/test_imports.py). It imports nothing but the standard
library and :mod:`docid.guard` (standard library only too).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from docid.guard import Kind, ensure_replaceable


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """A binary handle whose contents appear at ``path`` only if the block completes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fsync_tree(root: Path) -> None:
    """Flush every file under ``root`` to disk so a rename publishes complete contents."""
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def staging_dir(final: Path) -> Path:
    """A fresh hidden folder beside ``final`` to assemble a directory before publishing it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))


def backup_path(final: Path) -> Path:
    final = Path(final)
    return final.parent / f".{final.name}.previous"


def publish_dir(staged: Path, final: Path, *, kind: Kind) -> None:
    """Replace ``final`` by the complete directory ``staged``.

    POSIX cannot atomically swap two non-empty directories, so the old one is first renamed to a
    backup; if the process dies between the two renames, loading falls back to that backup.
    Only a folder of ``kind`` (or nothing, or an empty folder) at ``final`` or at its backup is
    replaced: anything else raises :class:`docid.guard.PathRefused` before anything moves.
    """
    staged, final = Path(staged), Path(final)
    ensure_replaceable(final, kind)
    ensure_replaceable(backup_path(final), kind)
    fsync_tree(staged)
    backup = backup_path(final)
    if backup.exists() and final.exists():
        shutil.rmtree(backup)
    if final.exists():
        os.replace(final, backup)
    os.replace(staged, final)
    if backup.exists():
        shutil.rmtree(backup)


def published(final: Path) -> Path:
    """``final``, or its backup when a process died between the two renames of ``publish_dir``."""
    final = Path(final)
    backup = backup_path(final)
    return backup if not final.exists() and backup.is_dir() else final
