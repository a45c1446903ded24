"""dsi never deletes what it did not write, and one process writes a path at a time.

Two guards for every folder dsi writes (an index, a work directory, a checkpoint):

- :func:`ensure_replaceable` refuses a path where something stands that dsi did not write: a
  folder that is not of the expected :class:`Kind` (recognised by its marker file), a file, a
  symbolic link (to anything) or a special file. Nothing at the path, or an empty folder, may be
  written. A :class:`FileKind` (a run file) may replace an empty file or one of its kind (by its
  first line), never a folder. The refusal is one sentence naming the path and what stands
  there; nothing is moved.
- :func:`writer_lock` lets one writer at a time hold a path: an exclusive ``flock`` on a lock
  file beside it (``.<name>.lock``) that names the holder's pid. The operating system releases
  it when the holder dies, however it dies; a lock file left by a killed process is reused.

Readers (search, serve) take no lock. Standard library only, like :mod:`docid.io`, so both can
move to a lower layer together. POSIX only (``fcntl``).
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
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


@dataclass(frozen=True)
class FileKind:
    """A kind of file dsi writes whole: recognised by its first line (``first_line(text)``)."""

    name: str  # as in a sentence: "a TREC run file"
    first_line: Callable[[str], bool]

    def mismatch(self, file: Path) -> str | None:
        """None when ``file`` is empty or of this kind, else why not, as a few words."""
        with open(file, "rb") as handle:
            head = handle.readline(1 << 16)
        if not head.strip():
            return None
        try:
            line = head.decode("utf-8")
        except UnicodeDecodeError:
            return "it is not UTF-8 text"
        return None if self.first_line(line) else "its first line is not one of its lines"


def what_stands(path: Path, kind: Kind | FileKind) -> str | None:
    """None when ``path`` may be (re)written as ``kind``: nothing is there, or an empty folder
    or a folder of ``kind`` (for a :class:`FileKind`: an empty file or a file of ``kind``);
    otherwise what stands there, as words for a sentence."""
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
        why = kind.mismatch(path) if isinstance(kind, FileKind) else "dsi writes a folder there"
        if why is None:
            return None
        return f"a file of {info.st_size} bytes that is not {kind.name} ({why})"
    if not stat.S_ISDIR(info.st_mode):
        return "a special file (a pipe, socket or device)"
    entries = len(os.listdir(path))
    noun = "entry" if entries == 1 else "entries"
    if isinstance(kind, FileKind):
        return f"a folder of {entries} {noun}"
    if entries == 0:
        return None
    why = kind.mismatch(path)
    if why is None:
        return None
    return f"a folder of {entries} {noun} that is not {kind.name} ({why})"


def ensure_replaceable(path: Path, kind: Kind | FileKind) -> None:
    """Raise :class:`PathRefused` unless :func:`what_stands` allows writing ``kind`` at ``path``."""
    found = what_stands(path, kind)
    if found is not None:
        empty = "an empty file" if isinstance(kind, FileKind) else "an empty folder"
        raise PathRefused(
            f"Refusing to write {kind.name} at {path}: {found} stands there, and dsi replaces "
            f"only {kind.name} or {empty}; choose another path or remove it yourself."
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
