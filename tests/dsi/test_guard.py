"""dsi never deletes what it did not write, and one writer holds a path at a time (library level).

What stands at a path is decided by :mod:`docid.guard`; ``publish_dir``, ``save`` and the work
directory of ``build`` ask it before anything moves. The lock is a real ``flock``: the tests
take it from other threads and other processes. Tests record the bad inputs and faults they
try with ``record_property``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from docid.guard import (
    Kind,
    PathRefused,
    WriterBusy,
    claim,
    ensure_replaceable,
    lock_path,
    what_stands,
    writer_lock,
)
from docid.io import backup_path, publish_dir
from dsi.index import GenerativeIndex
from dsi.index_format import INDEX_KIND, WORK_KIND
from dsi.kinds import load_index
from tests.conftest import child_env, random_corpus, tiny_config

NOTES = b"my own notes\n\x00\xff binary too\n"


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every path under ``folder`` (links not followed) with its bytes, or its link target."""
    out: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            out[name] = "-> " + os.readlink(path)
        elif path.is_file():
            out[name] = path.read_bytes()
        else:
            out[name] = "dir"
    return out


def fake_index(folder: Path) -> Path:
    """A folder that its manifest says is a dsi index (all the guard looks at)."""
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"format": "dsi-index"}))
    return folder


def user_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_bytes(NOTES)
    return folder


# ------------------------------------------------------------------------- what stands
def test_what_may_be_replaced(tmp_path, record_property) -> None:
    assert what_stands(tmp_path / "absent", INDEX_KIND) is None
    (tmp_path / "empty").mkdir()
    assert what_stands(tmp_path / "empty", INDEX_KIND) is None
    assert what_stands(fake_index(tmp_path / "idx"), INDEX_KIND) is None

    refused = {
        "folder": user_folder(tmp_path / "mine"),
        "file": tmp_path / "afile",
        "link-to-folder": tmp_path / "link1",
        "link-to-index": tmp_path / "link2",
        "link-to-file": tmp_path / "link3",
        "dangling-link": tmp_path / "link4",
        "fifo": tmp_path / "fifo",
        "under-a-file": tmp_path / "afile" / "sub",
        "other-format": tmp_path / "other",
        "manifest-not-json": tmp_path / "broken",
        "manifest-a-list": tmp_path / "listed",
    }
    (tmp_path / "afile").write_bytes(NOTES)
    (tmp_path / "link1").symlink_to(tmp_path / "mine")
    (tmp_path / "link2").symlink_to(tmp_path / "idx")
    (tmp_path / "link3").symlink_to(tmp_path / "afile")
    (tmp_path / "link4").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text('{"format": "something-else"}')
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    (tmp_path / "listed").mkdir()
    (tmp_path / "listed" / "manifest.json").write_text("[1, 2]")
    before = snapshot(tmp_path)
    words = {
        "folder": "a folder of 1 entry that is not a dsi index (it has no manifest.json)",
        "file": f"a file of {len(NOTES)} bytes",
        "link-to-folder": "a symbolic link (to ",
        "link-to-index": "a symbolic link (to ",
        "link-to-file": "a symbolic link (to ",
        "dangling-link": "a symbolic link (to ",
        "fifo": "a special file",
        "under-a-file": "a file in place of one of its parent folders",
        "other-format": "does not say format 'dsi-index'",
        "manifest-not-json": "is not a JSON object",
        "manifest-a-list": "is not a JSON object",
    }
    for case, path in refused.items():
        with pytest.raises(PathRefused) as exc:
            ensure_replaceable(path, INDEX_KIND)
        record_property("bad_inputs", 1)
        message = str(exc.value)
        assert words[case] in message, (case, message)
        assert str(path) in message and "\n" not in message
        assert message.startswith("Refusing to write a dsi index at ")
    assert snapshot(tmp_path) == before, "deciding moved or changed nothing"


def test_work_directory_kind(tmp_path) -> None:
    work = tmp_path / ".idx.work"
    work.mkdir()
    (work / "fingerprint").write_text("abc\n")
    (work / "checkpoint").mkdir()
    assert what_stands(work, WORK_KIND) is None
    assert "not a dsi work directory" in str(what_stands(user_folder(tmp_path / "w"), WORK_KIND))


# ------------------------------------------------------------------------- publish_dir
KIND = Kind("a test folder", "marker.json", "test-folder")


def staged(tmp_path: Path) -> Path:
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "marker.json").write_text('{"format": "test-folder"}')
    return stage


@pytest.mark.parametrize("what", ["folder", "file", "link", "backup-folder", "backup-file"])
def test_publish_dir_refuses_before_moving_anything(tmp_path, what, record_property) -> None:
    final = tmp_path / "out"
    if what == "folder":
        user_folder(final)
    elif what == "file":
        final.write_bytes(NOTES)
    elif what == "link":
        user_folder(tmp_path / "elsewhere")
        final.symlink_to(tmp_path / "elsewhere")
    else:  # the backup name beside a folder dsi wrote holds something of the user's
        staged(tmp_path).rename(final)
        if what == "backup-folder":
            user_folder(backup_path(final))
        else:
            backup_path(final).write_bytes(NOTES)
    stage = staged(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(PathRefused):
        publish_dir(stage, final, kind=KIND)
    record_property("bad_inputs", 1)
    assert snapshot(tmp_path) == before


def test_publish_dir_replaces_its_own_kind_and_empty_folders(tmp_path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    publish_dir(staged(tmp_path), final, kind=KIND)
    (final / "old.txt").write_text("old")
    publish_dir(staged(tmp_path), final, kind=KIND)
    assert sorted(p.name for p in final.iterdir()) == ["marker.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ------------------------------------------------------------------- save and build
@pytest.fixture(scope="module")
def tiny_index() -> GenerativeIndex:
    return GenerativeIndex.build(
        random_corpus(random.Random(1), 6), tiny_config("atomic", steps=1), progress_bar=False
    )


@pytest.mark.parametrize("what", ["folder", "file", "link-to-folder", "link-to-index"])
def test_save_refuses_what_is_not_an_index(tmp_path, tiny_index, what, record_property) -> None:
    target = tmp_path / "out"
    if what == "folder":
        user_folder(target)
    elif what == "file":
        target.write_bytes(NOTES)
    elif what == "link-to-folder":
        user_folder(tmp_path / "mine")
        target.symlink_to(tmp_path / "mine")
    else:
        tiny_index.save(tmp_path / "real")
        target.symlink_to(tmp_path / "real")
    before = snapshot(tmp_path)
    with pytest.raises(PathRefused, match="Refusing to write a dsi index at .*out"):
        tiny_index.save(target)
    record_property("bad_inputs", 1)
    assert snapshot(tmp_path) == before, "no staging folder, lock file or move is left"


def test_save_replaces_an_index_and_fills_an_empty_folder(tmp_path, tiny_index) -> None:
    (tmp_path / "idx").mkdir()
    tiny_index.save(tmp_path / "idx")
    first = (tmp_path / "idx" / "manifest.json").read_text()
    time.sleep(1.1)  # the manifest records the second it was written
    tiny_index.save(tmp_path / "idx")
    assert (tmp_path / "idx" / "manifest.json").read_text() != first
    assert load_index(tmp_path / "idx").corpus.doc_ids == tiny_index.corpus.doc_ids
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_build_refuses_a_work_dir_it_did_not_write_before_any_work(
    tmp_path, record_property
) -> None:
    work = user_folder(tmp_path / "work")
    before = snapshot(tmp_path)
    started = time.monotonic()
    with pytest.raises(PathRefused, match="not a dsi work directory"):
        GenerativeIndex.build(
            random_corpus(random.Random(1), 6),
            tiny_config("atomic", steps=1000),
            work_dir=work,
            progress_bar=False,
        )
    record_property("bad_inputs", 1)
    assert time.monotonic() - started < 5, "refused before training"
    assert snapshot(tmp_path) == before


def test_build_refuses_a_work_dir_another_writer_holds(tmp_path, record_property) -> None:
    work = tmp_path / "work"
    errors: list[BaseException] = []
    with writer_lock(work):

        def other_thread() -> None:
            try:
                GenerativeIndex.build(
                    random_corpus(random.Random(1), 6),
                    tiny_config("atomic", steps=1),
                    work_dir=work,
                    progress_bar=False,
                )
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                errors.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    record_property("faults", 1)
    assert len(errors) == 1 and isinstance(errors[0], WriterBusy), errors
    assert f"pid {os.getpid()}" in str(errors[0])
    assert not work.exists(), "the refused build wrote nothing"


# --------------------------------------------------------------------------------- lock
def test_lock_is_reentrant_in_a_thread_and_refused_in_another(tmp_path) -> None:
    target = tmp_path / "out"
    with writer_lock(target) as lock:
        assert lock == lock_path(target) and lock.read_text() == f"{os.getpid()}\n"
        with writer_lock(tmp_path / "." / "out"):  # the same path, spelled otherwise
            pass
        assert lock.exists(), "the inner release keeps the outer hold"
        caught: list[BaseException] = []

        def other() -> None:
            try:
                with writer_lock(target):
                    pass
            except WriterBusy as exc:
                caught.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert len(caught) == 1 and f"pid {os.getpid()}" in str(caught[0])
    assert not lock.exists(), "the lock file is removed on release"
    assert list(tmp_path.iterdir()) == []


def test_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path) -> None:
    target = tmp_path / "out"
    lock_path(target).write_text("999999\n")  # left by a killed process: no flock on it
    with writer_lock(target) as lock:
        assert lock.read_text() == f"{os.getpid()}\n"
    assert not lock.exists()


HOLDER = """
import sys, time
from pathlib import Path
from docid.guard import writer_lock
with writer_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_in_another_process(target: Path, seconds: float = 60) -> subprocess.Popen:
    """A real second process holding the writer lock of ``target`` (started, lock taken)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(target), str(seconds)],
        env=child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_lock_held_by_another_process_names_its_pid_and_dies_with_it(
    tmp_path, record_property
) -> None:
    target = tmp_path / "idx"
    holder = hold_in_another_process(target)
    try:
        with pytest.raises(WriterBusy) as exc, writer_lock(target):
            pass
        record_property("faults", 1)
        message = str(exc.value)
        assert f"pid {holder.pid}" in message and str(target) in message
        with pytest.raises(WriterBusy), claim(target, INDEX_KIND):  # the same lock
            pass
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: no release code runs
        holder.wait()
    # The operating system released the flock with the process; its lock file is stale.
    assert lock_path(target).read_text() == f"{holder.pid}\n"
    with writer_lock(target):
        assert lock_path(target).read_text() == f"{os.getpid()}\n"
