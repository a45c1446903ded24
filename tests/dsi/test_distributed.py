"""Two processes on the CPU (gloo) train one index together under ``accelerate launch``.

accelerate's own ``launch --cpu --num_processes 2`` starts several processes only through
mpirun; without it, it starts one. So the processes are started as on GPUs (``--multi_gpu``, i.e.
torchrun) and told to use the CPU (``ACCELERATE_USE_CPU=1``; ``dsi index`` also does this by
itself on a machine without CUDA).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from dsi.retriever import Retriever
from tests.conftest import child_env
from tests.dsi.test_cli import TINY, write_corpus


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_train_one_loadable_index(tmp_path):
    # 40 documents, batch 8: the ranks split each epoch's batches between them.
    corpus = write_corpus(tmp_path / "corpus.jsonl", n_docs=40)
    out = tmp_path / "idx"
    env = child_env(OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1", CUDA_VISIBLE_DEVICES="")
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        "dsi.cli",
    ]
    args = ["index", "--corpus", str(corpus), "--output", str(out), "--max-steps", "5", *TINY]
    proc = subprocess.run([*launch, *args], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]

    # One summary line: only the main process saves and reports.
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, proc.stdout
    summary = json.loads(lines[0])
    assert summary["documents"] == 40
    training = summary["training"]
    assert training["steps"] == 5
    # Each step consumed a batch (of at most 8) on each of the two processes: one process alone
    # could not have seen more than 5 * 8 examples.
    assert 5 * 8 < training["examples"] <= 5 * 8 * 2

    # Nothing is left beside the index: no work directory, no half-written staging folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "idx"]
    retriever = Retriever.load(out, device="cpu")
    assert retriever.num_docs == 40
    hits = retriever.search(["river stone", "amber birch"], k=3)
    assert all(1 <= len(h) <= 3 for h in hits)
