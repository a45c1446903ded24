"""dsi never deletes what it did not write, and one process writes a path at a time.

Two guards for every folder dsi writes (an index, a work directory, a checkpoint):

- :func:`ensure_replaceable` refuses a path where something stands that dsi did not write: a
  folder that is not of the expected :class:`Kind` (recognised by its marker file), a file, a
  symbolic link (to anything) or a special file. Nothing at the path, or an empty folder, may be
  written. The refusal is one sentence naming the path and what stands there; nothing is moved.
- :func:`writer_lock` lets one writer at a time hold a path: an exclusive ``flock`` on a lock
  file beside it (``.<name>.lock``) that names the holder's pid. The operating system releases
  it when the holder dies, however it dies; a lock file left by a killed process is reused.

Readers (search, serve) take no lock. Standard library only, like :mod:`dsi.io`, so both can
move to a lower layer together. POSIX only (``fcntl``).
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class PathRefused(ValueError):
    """Something dsi did not write stands where it would write; the message says what."""


class WriterBusy(ValueError):
    """Another process (or thread) is writing the same path; the message names its pid."""


@dataclass(frozen=True)
class Kind:
    """A kind of folder dsi writes: one holding the file ``marker`` and, when ``format`` is
    given, whose marker is a JSON object with that ``"format"`` value."""

    name: str  # as in a sentence: "a dsi index"
    marker: str
    format: str | None = None

    def mismatch(self, folder: Path) -> str | None:
        """None when ``folder`` is of this kind, else why not, as a few words."""
        marker = folder / self.marker
        if not marker.is_file():
            return f"it has no {self.marker}"
        if self.format is None:
            return None
        try:
            found = json.loads(marker.read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            return f"its {self.marker} is not a JSON object"
        if found != self.format:
            return f"its {self.marker} does not say format {self.format!r}"
        return None


def what_stands(path: Path, kind: Kind) -> str | None:
    """None when ``path`` may be (re)written as ``kind``: nothing is there, an empty folder or
    a folder of ``kind``; otherwise what stands there, as words for a sentence."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return "a file in place of one of its parent folders"
    if stat.S_ISLNK(info.st_mode):
        return f"a symbolic link (to {os.readlink(path)})"
    if stat.S_ISREG(info.st_mode):
        return f"a file of {info.st_size} bytes"
    if not stat.S_ISDIR(info.st_mode):
        return "a special file (a pipe, socket or device)"
    entries = len(os.listdir(path))
    if entries == 0:
        return None
    why = kind.mismatch(path)
    if why is None:
        return None
    noun = "entry" if entries == 1 else "entries"
    return f"a folder of {entries} {noun} that is not {kind.name} ({why})"


def ensure_replaceable(path: Path, kind: Kind) -> None:
    """Raise :class:`PathRefused` unless :func:`what_stands` allows writing ``kind`` at ``path``."""
    found = what_stands(path, kind)
    if found is not None:
        raise PathRefused(
            f"Refusing to write {kind.name} at {path}: {found} stands there, and dsi replaces "
            f"only {kind.name} or an empty folder; choose another path or remove it yourself."
        )


def lock_path(path: Path) -> Path:
    """The lock file of ``path``: hidden, beside it (``path`` may be replaced while held)."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


# Lock files this process holds: key -> [fd, holding thread, depth]. A thread may take the lock
# of a path again (the CLI holds the output while ``save`` takes it); another thread may not.
_held: dict[str, list[int]] = {}
_held_guard = threading.Lock()


@contextmanager
def writer_lock(path: Path) -> Iterator[Path]:
    """Hold the writer lock of ``path`` for the block, or raise :class:`WriterBusy` at once.

    Creates the parent folder if need be. The lock file is removed on release; a crashed
    holder's lock file is stale and simply taken over.
    """
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    key = os.path.join(os.path.realpath(lock.parent), lock.name)
    me = threading.get_ident()
    with _held_guard:
        entry = _held.get(key)
        if entry is not None and entry[1] == me:
            entry[2] += 1
            fd = None
        else:
            fd = _acquire(lock, path)
            _held[key] = [fd, me, 1]
    try:
        yield lock
    finally:
        with _held_guard:
            entry = _held[key]
            entry[2] -= 1
            if entry[2] == 0:
                del _held[key]
                # Unlink while still holding: a process that opened the old file retries
                # (see _acquire), so no two holders ever lock different files of one name.
                lock.unlink(missing_ok=True)
                os.close(entry[0])


def _acquire(lock: Path, path: Path) -> int:
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _holder(lock)
            raise WriterBusy(
                f"{path} is being written by another dsi process ({holder}, lock {lock}); "
                "wait for it to finish or stop it, then run again."
            ) from None
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)  # its holder released and removed it between our open and flock


def _holder(lock: Path) -> str:
    """'pid N' of the lock's holder; it writes its pid just after locking, so wait a moment."""
    for _ in range(20):
        try:
            text = lock.read_text().strip()
        except OSError:
            text = ""
        if text.isdigit():
            return f"pid {text}"
        time.sleep(0.05)
    return "pid unknown"


@contextmanager
def claim(path: Path, kind: Kind, lock: bool = True) -> Iterator[None]:
    """Refuse ``path`` unless it may be written as ``kind``; then hold its writer lock (when
    ``lock``) and check again, since another writer may have changed it meanwhile."""
    ensure_replaceable(path, kind)
    if not lock:
        yield
        return
    with writer_lock(path):
        ensure_replaceable(path, kind)
        yield
