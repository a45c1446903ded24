"""``dsi index`` and ``dsi add`` never delete what dsi did not write, and run one at a time.

A refusal is exit 2 with one sentence naming the path and what stands there, and it comes before
any work (no "Loaded ..." log line: the corpus is not even read); everything in the folder is
byte-for-byte as before. The user's own case and the lock run in subprocesses, as a user runs
them; the other refusals call the CLI's ``main`` in this process (the same code, seconds faster).
Tests record the bad inputs and faults they try with ``record_property``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docid.guard import lock_path, writer_lock
from dsi.cli import main
from tests.conftest import child_env
from tests.dsi.test_cli import TINY, dsi, write_corpus
from tests.dsi.test_guard import NOTES, hold_in_another_process, snapshot, user_folder


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A small index built by ``dsi index`` from a corpus whose ids are JSON integers."""
    folder = tmp_path_factory.mktemp("built")
    corpus = write_corpus(folder / "strings.jsonl")
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    numbered = folder / "corpus.jsonl"
    numbered.write_text(
        "".join(json.dumps({**r, "_id": 100 + i}) + "\n" for i, r in enumerate(rows))
    )
    out = folder / "idx"
    args = ["index", "--corpus", str(numbered), "--output", str(out), "--max-steps", "2"]
    assert main([*args, *TINY, "--quiet"]) == 0
    return out


def refused(args: list[str], folder: Path, capsys, caplog, *needles: str) -> str:
    """``dsi *args`` in this process: exit 2, one sentence naming ``needles``, nothing read or
    written, ``folder`` untouched."""
    before = snapshot(folder)
    capsys.readouterr()
    caplog.clear()
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dsi: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Loaded" not in caplog.text, "refused before the corpus was read"
    assert snapshot(folder) == before, "nothing was moved, written or deleted"
    return lines[0]


def refused_in_a_process(args: list[str], folder: Path, *needles: str) -> str:
    """``dsi *args`` as a user runs it: exit 2, one sentence naming ``needles``, before any
    work, ``folder`` untouched."""
    before = snapshot(folder)
    proc = dsi(*args, check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dsi: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert snapshot(folder) == before, "nothing was moved, written or deleted"
    return lines[0]


def test_integer_ids_index_and_search_as_decimal_strings(built, tmp_path, capsys) -> None:
    capsys.readouterr()
    assert main(["search", "--index", str(built), "-k", "3", "--quiet", "river stone"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits and all(h["doc_id"] in {str(100 + i) for i in range(10)} for h in hits)
    (tmp_path / "q.jsonl").write_text('{"_id": 1, "text": "river stone"}\n')
    (tmp_path / "qrels.tsv").write_text(f"1\t{hits[0]['doc_id']}\t1\n")
    args = ["eval", "--index", str(built), "--queries", str(tmp_path / "q.jsonl")]
    args += ["--qrels", str(tmp_path / "qrels.tsv"), "-k", "3", "--quiet"]
    assert main([*args, "--run-file", str(tmp_path / "run.trec")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dsi"]["Hits@1"] == 1.0  # the qrels (integer query id) name the top hit


def test_index_keeps_the_users_folder(tmp_path, record_property) -> None:
    corpus = write_corpus(tmp_path / "docs.jsonl")
    mydocs = user_folder(tmp_path / "mydocs")
    message = refused_in_a_process(
        ["index", "--corpus", str(corpus), "--output", str(mydocs), "--max-steps", "2", *TINY],
        tmp_path,
        f"Refusing to write a dsi index at {mydocs}:",
        "a folder of 1 entry that is not a dsi index (it has no manifest.json)",
        "remove it yourself",
    )
    record_property("bad_inputs", 1)
    assert "Loaded" not in message
    assert (mydocs / "notes.txt").read_bytes() == NOTES


@pytest.mark.parametrize(
    "case",
    ["file", "link-to-folder", "link-to-index", "work-dir-file", "work-dir-folder", "backup"],
)
def test_index_refuses_what_is_not_its_own(
    tmp_path, built, case, capsys, caplog, record_property
) -> None:
    corpus = write_corpus(tmp_path / "docs.jsonl")
    out = tmp_path / "out"
    needles = [str(out)]
    if case == "file":
        out.write_bytes(NOTES)
        needles.append(f"a file of {len(NOTES)} bytes")
    elif case == "link-to-folder":
        out.symlink_to(user_folder(tmp_path / "mine"))
        needles.append("a symbolic link (to ")
    elif case == "link-to-index":
        out.symlink_to(built)
        needles.append(f"a symbolic link (to {built})")
    elif case == "backup":  # the name publishing moves an old index to holds the user's folder
        backup = user_folder(tmp_path / ".out.previous")
        needles = [str(backup), "not a dsi index"]
    else:
        work = tmp_path / ".out.work"
        if case == "work-dir-file":
            work.write_bytes(NOTES)
        else:
            user_folder(work)
        needles = [str(work), "dsi work directory"]
    args = ["index", "--corpus", str(corpus), "--output", str(out), "--max-steps", "2", *TINY]
    refused(args, tmp_path, capsys, caplog, *needles)
    record_property("bad_inputs", 1)


@pytest.mark.parametrize("case", ["output-folder", "index-is-a-link", "work-dir-file"])
def test_add_refuses_what_is_not_its_own(
    tmp_path, built, case, capsys, caplog, record_property
) -> None:
    new = tmp_path / "new.jsonl"
    new.write_text('{"_id": "n1", "text": "a new river stone"}\n')
    args = ["add", "--index", str(built), "--corpus", str(new), "--max-steps", "1"]
    if case == "output-folder":
        mine = user_folder(tmp_path / "mine")
        args += ["--output", str(mine)]
        needles = [str(mine), "not a dsi index"]
    elif case == "index-is-a-link":  # the default output is --index, here a symbolic link
        link = tmp_path / "current"
        link.symlink_to(built)
        args[2] = str(link)
        needles = [str(link), "a symbolic link"]
    else:
        args += ["--output", str(tmp_path / "out")]
        (tmp_path / ".out.add.work").write_bytes(NOTES)
        needles = [str(tmp_path / ".out.add.work"), "a file of"]
    manifest = (built / "manifest.json").read_bytes()
    refused(args, tmp_path, capsys, caplog, *needles)
    record_property("bad_inputs", 1)
    assert (built / "manifest.json").read_bytes() == manifest


def test_a_held_output_is_refused_at_once(tmp_path, built, capsys, caplog, record_property) -> None:
    """A process holding the lock (through the library); ``dsi index`` and ``dsi add`` on the
    same output exit 2 naming its pid, while ``dsi search`` reads the index undisturbed."""
    corpus = write_corpus(tmp_path / "docs.jsonl")
    out = tmp_path / "out"
    holder = hold_in_another_process(out)
    try:
        args = ["index", "--corpus", str(corpus), "--output", str(out), "--max-steps", "2", *TINY]
        started = time.monotonic()
        message = refused_in_a_process(
            args, tmp_path, f"another dsi process (pid {holder.pid}", str(out)
        )
        assert time.monotonic() - started < 60
        assert "Loaded" not in message
        record_property("faults", 1)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()

    holder = hold_in_another_process(built)
    try:
        new = tmp_path / "new.jsonl"
        new.write_text('{"_id": "n1", "text": "a new river stone"}\n')
        args = ["add", "--index", str(built), "--corpus", str(new), "--max-steps", "1"]
        refused(args, built, capsys, caplog, f"pid {holder.pid}")
        record_property("faults", 1)
        assert main(["search", "--index", str(built), "-k", "2", "--quiet", "river stone"]) == 0
        assert len(json.loads(capsys.readouterr().out)["hits"]) == 2
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_two_dsi_index_runs_on_one_output(tmp_path, record_property) -> None:
    """Two real ``dsi index`` processes: the second exits 2 naming the first's pid."""
    corpus = write_corpus(tmp_path / "docs.jsonl")
    out = tmp_path / "out"
    args = ["index", "--corpus", str(corpus), "--output", str(out), *TINY]
    first = subprocess.Popen(
        [sys.executable, "-m", "dsi.cli", *args, "--max-steps", "100000"],
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        lock = lock_path(out)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            if lock.exists() and lock.read_text().strip() == str(first.pid):
                break
            time.sleep(0.1)
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
        second = dsi(*args, "--max-steps", "2", check=False, timeout=120)
        record_property("faults", 1)
        assert second.returncode == 2, second.stderr[-3000:]
        assert f"another dsi process (pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr and "Loaded" not in second.stderr
        assert first.poll() is None, "the first run goes on"
    finally:
        first.send_signal(signal.SIGKILL)  # a crash: the OS releases its lock
        first.wait()
    assert not out.exists()
    with writer_lock(out):  # free again, though the killed run's lock file is still there
        pass


@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
def test_search_refuses_an_empty_query(built, query, capsys, record_property) -> None:
    capsys.readouterr()
    assert main(["search", "--index", str(built), "river", query]) == 2
    record_property("bad_inputs", 1)
    lines = capsys.readouterr().err.strip().splitlines()
    assert (
        len(lines) == 1 and "Query 1 is" in lines[0] and "give something to search for" in lines[0]
    )


def test_index_refuses_a_control_character_in_an_id(tmp_path, capsys, record_property) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"_id": "a", "text": "x y"}\n{"_id": "b\\u0000c", "text": "x y"}\n')
    args = ["index", "--corpus", str(corpus), "--output", str(tmp_path / "idx"), *TINY]
    capsys.readouterr()
    assert main(args) == 2
    record_property("bad_inputs", 1)
    err = capsys.readouterr().err
    assert "docs.jsonl line 2: doc id 'b\\x00c' contains the control character U+0000" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl"]


def test_eval_keeps_a_users_file_given_as_run_file(
    built, tmp_path, capsys, caplog, record_property
) -> None:
    (tmp_path / "q.jsonl").write_text('{"_id": 1, "text": "river stone"}\n')
    (tmp_path / "qrels.tsv").write_text("1\t100\t1\n")
    notes = tmp_path / "notes.txt"
    notes.write_bytes(NOTES)
    args = ["eval", "--index", str(built), "--queries", str(tmp_path / "q.jsonl")]
    args += ["--qrels", str(tmp_path / "qrels.tsv"), "--run-file", str(notes)]
    refused(args, tmp_path, capsys, caplog, str(notes), "not a TREC run file")
    record_property("bad_inputs", 1)
    assert notes.read_bytes() == NOTES


def test_search_explain_adds_what_scored_each_hit(built, tmp_path, capsys, caplog) -> None:
    capsys.readouterr()
    args = ["search", "--index", str(built), "-k", "3", "--quiet", "river stone"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--explain"]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert [h["doc_id"] for h in explained["hits"]] == [h["doc_id"] for h in plain["hits"]]
    for hit in explained["hits"]:  # a docid index: the decoded docid and its log-probability
        why = hit["explain"]
        assert set(why) == {"docid", "logprob"} and why["docid"]
        assert why["logprob"] == pytest.approx(hit["score"], abs=1e-4)
    assert all("explain" not in hit for hit in plain["hits"])
    refused([*args, "--explain", "--format", "trec"], tmp_path, capsys, caplog, "--explain")
