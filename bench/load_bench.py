"""Load time, resident memory and per-query latency of a saved index; prints one JSON object.

    python -m bench.load_bench --index runs/cran --queries /work/shared/data/cranfield/queries.jsonl
    python -m bench.load_bench --index runs/cran --queries Q.jsonl --fresh 5   # + 5 fresh processes
    python -m bench.load_bench --synthetic runs/synth1m --docs 1000000         # build one, then measure

In one process: ``Retriever.load`` (seconds, RSS), the first search (one query), then
``--num-queries`` more distinct queries one at a time (warm latency: median, p90, max). With
``--fresh N``, N fresh processes each load the index and search one other query (cold latency:
what a query costs in a process that has read nothing of the index). ``--no-feedback-table``
searches as an index without its feedback words would (documents read at search time).

``--synthetic DIR --docs N`` first writes an n-gram index of N synthetic passages (token ids of
about 80 tokens drawn from a Zipf(1.1) law over the model's vocabulary, their decoded text as
documents, a word index and a feedback table drawn alike) around the model of ``--model-from``
(an existing index; default runs/cran), so that loading and searching a large index can be
measured without training or tokenizing it. RSS is split into anonymous memory (the heap) and
file pages (mapped index files, which the kernel may drop and read again).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def memory() -> dict[str, float]:
    """Resident memory of this process in MB: total, anonymous and file-backed."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {
        "rss_mb": fields.get("VmRSS", 0.0),
        "anon_mb": fields.get("RssAnon", 0.0),
        "file_mb": fields.get("RssFile", 0.0),
        "peak_mb": fields.get("VmHWM", 0.0),
    }


def read_queries(path: Path) -> list[str]:
    texts = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                texts.append(json.loads(line)["text"])
    return texts


def measure(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    from dsi.retriever import Retriever

    imported = time.perf_counter() - started
    before = memory()
    started, cpu = time.perf_counter(), time.process_time()
    retriever = Retriever.load(args.index, device="cpu")
    loaded = time.perf_counter() - started
    loaded_cpu = time.process_time() - cpu
    after_load = memory()
    if args.no_feedback_table and hasattr(retriever.index, "feedback_words"):
        retriever.index.feedback_words = None
    queries = read_queries(args.queries)[args.offset :]
    started, cpu = time.perf_counter(), time.process_time()
    retriever.search(queries[:1], k=args.k)
    first = time.perf_counter() - started
    first_cpu = time.process_time() - cpu
    after_first = memory()
    warm, warm_cpu = [], []
    for query in queries[1 : 1 + args.num_queries]:
        started, cpu = time.perf_counter(), time.process_time()
        retriever.search([query], k=args.k)
        warm.append(time.perf_counter() - started)
        warm_cpu.append(time.process_time() - cpu)
    result = {
        "index": str(args.index),
        "documents": retriever.num_docs,
        "feedback_table": getattr(retriever.index, "feedback_words", None) is not None,
        "import_seconds": round(imported, 3),
        "load_seconds": round(loaded, 3),
        "load_cpu_seconds": round(loaded_cpu, 3),
        "first_search_seconds": round(first, 3),
        # CPU seconds of this process: what a query costs without the machine's other load.
        "first_search_cpu_seconds": round(first_cpu, 3),
        "load_plus_first_search_seconds": round(loaded + first, 3),
        "memory_before_load": before,
        "memory_after_load": after_load,
        "memory_after_first_search": after_first,
    }
    if warm:
        ms = sorted(1000 * t for t in warm)
        result["warm_queries"] = len(ms)
        result["warm_ms"] = {
            "median": round(statistics.median(ms), 1),
            "p90": round(ms[int(0.9 * (len(ms) - 1))], 1),
            "max": round(ms[-1], 1),
        }
        cpu_ms = sorted(1000 * t for t in warm_cpu)
        result["warm_cpu_ms"] = {
            "median": round(statistics.median(cpu_ms), 1),
            "p90": round(cpu_ms[int(0.9 * (len(cpu_ms) - 1))], 1),
            "max": round(cpu_ms[-1], 1),
        }
        result["memory_after_warm"] = memory()
    if warm and args.repeat:
        # The same queries again: their feedback documents, if read at search time, are cached.
        again = []
        for query in queries[1 : 1 + args.num_queries]:
            cpu = time.process_time()
            retriever.search([query], k=args.k)
            again.append(1000 * (time.process_time() - cpu))
        result["repeated_cpu_ms_median"] = round(statistics.median(again), 1)
    return result


def fresh(args: argparse.Namespace) -> list[dict[str, float]]:
    """First-query latency (wall and CPU ms) in ``args.fresh`` new processes, each another
    query."""
    out = []
    for i in range(args.fresh):
        command = [sys.executable, "-m", "bench.load_bench", "--index", str(args.index)]
        command += ["--queries", str(args.queries), "--num-queries", "0"]
        command += ["--offset", str(args.offset + 1 + args.num_queries + i)]
        command += ["--threads", str(args.threads)]
        if args.no_feedback_table:
            command.append("--no-feedback-table")
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        reply = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        measured = json.loads(reply.stdout)
        out.append(
            {
                "wall_ms": round(1000 * measured["first_search_seconds"], 1),
                "cpu_ms": round(1000 * measured["first_search_cpu_seconds"], 1),
            }
        )
    return out


def synthetic_index(directory: Path, docs: int, model_from: Path, seed: int = 0) -> Path:
    """An n-gram index of ``docs`` synthetic passages around ``model_from``'s model."""
    import numpy as np

    from docid.words import WordIndex
    from dsi.feedback import FeedbackWords
    from dsi.kinds import load_index
    from dsi.seal import NgramGenerativeIndex
    from trie.fmindex import NgramIndex

    base = load_index(model_from)
    tokenizer = base.tokenizer
    rng = np.random.default_rng(seed)
    special = set(tokenizer.all_special_ids)
    usable = np.array([i for i in range(len(tokenizer)) if i not in special], dtype=np.int64)
    lengths = rng.integers(60, 100, size=docs)
    ranks = rng.zipf(1.1, size=int(lengths.sum())) - 1
    stream = usable[ranks % len(usable)]
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    token_docs = [stream[bounds[i] : bounds[i + 1]] for i in range(docs)]
    ngrams = NgramIndex.build(token_docs, separator=base.model.config.pad_token_id)
    # Documents: the decoded text of a document's first 24 tokens, to keep the build short.
    texts = tokenizer.batch_decode([t[:24].tolist() for t in token_docs])
    del token_docs
    doc_ids = [f"d{i}" for i in range(docs)]
    from dsi.data import Corpus

    corpus = Corpus.of_checked(doc_ids, [""] * docs, [t or "x" for t in texts], "synthetic")
    # Word index: Zipf(1.1) word ids, about 40 content words a document.
    vocabulary_size = 200_000
    word_lengths = rng.integers(30, 50, size=docs).astype(np.int32)
    words = (rng.zipf(1.1, size=int(word_lengths.sum())) - 1) % vocabulary_size
    owners = np.repeat(np.arange(docs, dtype=np.int64), word_lengths)
    keys, counts = np.unique(words * docs + owners, return_counts=True)
    by_word = keys // docs
    offsets = np.zeros(vocabulary_size + 1, dtype=np.int64)
    np.cumsum(np.bincount(by_word, minlength=vocabulary_size), out=offsets[1:])
    vocabulary = {f"w{i}": i for i in range(vocabulary_size)}
    word_index = WordIndex(
        vocabulary,
        offsets,
        (keys % docs).astype(np.int32),
        counts.astype(np.int32),
        word_lengths,
    )
    # Feedback table: 12 words a document, drawn alike.
    per_doc = 12
    feedback = FeedbackWords(
        beams=base.config.num_beams,
        vocabulary=[f"w{i}" for i in range(vocabulary_size)],
        offsets=np.arange(docs + 1, dtype=np.int64) * per_doc,
        words=((rng.zipf(1.1, size=docs * per_doc) - 1) % vocabulary_size).astype(np.int32),
        counts=rng.integers(1, 4, size=docs * per_doc).astype(np.int32),
    )
    index = NgramGenerativeIndex(
        config=base.config,
        tokenizer=tokenizer,
        model=base.model,
        ngrams=ngrams,
        corpus=corpus,
        lineage=base.lineage,
        word_index=word_index,
        feedback_words=feedback,
    )
    if directory.exists():
        shutil.rmtree(directory)
    return index.save(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path)
    parser.add_argument("--queries", type=Path)
    parser.add_argument("--num-queries", type=int, default=20)
    parser.add_argument("--offset", type=int, default=0, help="first query to use")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fresh", type=int, default=0, help="fresh processes to time")
    parser.add_argument("--no-feedback-table", action="store_true")
    parser.add_argument("--repeat", action="store_true", help="search the warm queries again")
    parser.add_argument("--synthetic", type=Path, help="write a synthetic index here first")
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--model-from", type=Path, default=REPO / "runs" / "cran")
    args = parser.parse_args()
    if args.synthetic is not None:
        started = time.perf_counter()
        synthetic_index(args.synthetic, args.docs, args.model_from)
        print(
            json.dumps(
                {
                    "synthetic": str(args.synthetic),
                    "docs": args.docs,
                    "seconds": round(time.perf_counter() - started, 1),
                    "peak_mb": memory()["peak_mb"],
                }
            ),  # fmt: skip
            file=sys.stderr,
        )
        args.index = args.index or args.synthetic
    if args.index is None or args.queries is None:
        parser.error("--index (or --synthetic) and --queries are needed")
    result = measure(args)
    if args.fresh:
        cold = fresh(args)
        result["fresh_first_query"] = cold
        result["fresh_median_wall_ms"] = round(statistics.median(c["wall_ms"] for c in cold), 1)
        result["fresh_median_cpu_ms"] = round(statistics.median(c["cpu_ms"] for c in cold), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
