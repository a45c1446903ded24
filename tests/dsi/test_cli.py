"""The dsi command line, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsi.retriever import Retriever
from tests.conftest import child_env, random_corpus

TINY = [
    "--set",
    "model_config.vocab_size=120",
    "--set",
    "model_config.size=tiny",
    "--set",
    "train.batch_size=8",
    "--set",
    "train.warmup_steps=2",
    "--docids",
    "atomic",
]


def dsi(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    env = child_env()
    proc = subprocess.run(
        [sys.executable, "-m", "dsi.cli", *args], capture_output=True, text=True, env=env, **kwargs
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dsi {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def kill_after_checkpoint(args: list[str], state: Path) -> None:
    """Run ``dsi *args`` and SIGKILL it a second after it wrote the checkpoint ``state``."""
    env = child_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsi.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not state.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), f"dsi {args[0]} wrote a checkpoint before it was killed"


def write_corpus(path: Path, n_docs: int = 10, seed: int = 0) -> Path:
    corpus = random_corpus(random.Random(seed), n_docs)
    with path.open("w") as handle:
        for doc_id, title, text in zip(corpus.doc_ids, corpus.titles, corpus.texts, strict=True):
            handle.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    return path


def test_index_search_eval_end_to_end(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    out = tmp_path / "idx"
    built = dsi("index", "--corpus", str(corpus), "--output", str(out), "--max-steps", "5", *TINY)
    summary = json.loads(built.stdout)
    assert summary["documents"] == 10 and summary["training"]["steps"] == 5
    assert not (tmp_path / ".idx.work").exists(), "the work directory is removed after success"

    found = dsi("search", "--index", str(out), "-k", "3", "river stone", "amber birch")
    lines = [json.loads(line) for line in found.stdout.splitlines()]
    assert [line["query"] for line in lines] == ["river stone", "amber birch"]
    assert all(1 <= len(line["hits"]) <= 3 for line in lines)

    (tmp_path / "q.jsonl").write_text('{"_id": "q1", "text": "river stone"}\n')
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td3\t1\n")
    evaluated = dsi(
        "eval",
        "--index",
        str(out),
        "--queries",
        str(tmp_path / "q.jsonl"),
        "--qrels",
        str(tmp_path / "qrels.tsv"),
        "-k",
        "5",
        "--bm25",
        "--run-file",
        str(tmp_path / "run.trec"),
    )
    report = json.loads(evaluated.stdout)
    keys = {"nDCG@10", "Hits@1", "Hits@10", "MRR@10", "Recall@10", "Recall@100"}
    assert keys <= set(report["dsi"]) and keys <= set(report["bm25"])
    run_lines = (tmp_path / "run.trec").read_text().splitlines()
    assert run_lines and run_lines[0].split()[0] == "q1" and len(run_lines[0].split()) == 6


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n', "line 2"),
        ('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n', "line 2"),
        ('{"_id": "a", "text": "   "}\n', "line 1"),
    ],
)
def test_bad_corpus_fails_cleanly_and_leaves_nothing(tmp_path, content, message):
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text(content)
    proc = dsi(
        "index", "--corpus", str(corpus), "--output", str(tmp_path / "idx"), *TINY, check=False
    )
    assert proc.returncode == 2
    assert "bad.jsonl" in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


@pytest.mark.slow
def test_sigkill_during_index_keeps_old_index_and_resumes(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", n_docs=12)
    out = tmp_path / "idx"
    dsi("index", "--corpus", str(corpus), "--output", str(out), "--max-steps", "3", *TINY)
    queries = ["river stone", "amber birch", "quartz"]
    before = Retriever.load(out, device="cpu").search(queries, k=4)
    manifest_before = (out / "manifest.json").read_text()

    # A second, long build into the same directory, killed after its first checkpoint.
    args = ["index", "--corpus", str(corpus), "--output", str(out), "--max-steps", "100000"]
    state = tmp_path / ".idx.work" / "checkpoint" / "state.json"
    kill_after_checkpoint([*args, "--set", "train.checkpoint_minutes=0.01", *TINY], state)

    assert (out / "manifest.json").read_text() == manifest_before
    after = Retriever.load(out, device="cpu").search(queries, k=4)
    assert [[(h.doc_id, round(h.score, 5)) for h in hits] for hits in after] == [
        [(h.doc_id, round(h.score, 5)) for h in hits] for hits in before
    ]
    step = json.loads(state.read_text())["position"]["step"]
    assert step > 0
    resumed = dsi(
        "index", "--corpus", str(corpus), "--output", str(out), "--max-steps", str(step + 3), *TINY
    )
    assert f"Resuming training from step {step}" in resumed.stderr
    assert json.loads(resumed.stdout)["training"]["steps"] == step + 3
