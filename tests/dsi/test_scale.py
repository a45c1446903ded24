"""What lets a build scale to a million passages keeps its results: the word-cached token ids
are the tokenizer's, the n-gram index from one token stream is the one from per-document lists,
the streamed data digest is the one of the whole JSON, and ``bench/scale_bench.py`` runs."""

from __future__ import annotations

import hashlib
import json
import os
import random
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dsi.data import Corpus, TrainingQueries
from dsi.index import training_data_digest
from dsi.model import train_tokenizer
from dsi.tokens import WordCache, token_ids, token_stream
from trie.fmindex import NgramIndex

REPO = Path(__file__).resolve().parents[2]
WORDS = ["alpha", "Beta", "gamma,", "delta.", "(epsilon)", "zeta-eta", "theta's", "IOTA", "x2"]


def _texts(rng: random.Random, n: int) -> list[str]:
    texts = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(0, 12))]
        texts.append(" ".join(words))
    # Printable ASCII of every kind, runs of spaces, and texts the word cache must not take
    # (tabs, newlines, non-ASCII): those go through the tokenizer itself.
    printable = string.printable[:95]
    texts += ["".join(rng.choice(printable) for _ in range(rng.randint(0, 40))) for _ in range(n)]
    texts += ["  two  spaces ", "", " ", "tab\there", "new\nline", "café naïve", "α-helix β"]
    texts += ["ﬁne ligature", "full\u3000width", "a\u00a0b", "ＡＢＣ"]
    return texts


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    rng = random.Random(0)
    return train_tokenizer(
        _texts(rng, 400), 200, tmp_path_factory.mktemp("tok") / "spm", lowercase=True
    )


def test_word_cached_ids_are_the_tokenizers(tokenizer):
    texts = _texts(random.Random(1), 300)
    expected = tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert token_ids(tokenizer, texts) == expected
    cache = WordCache(tokenizer)
    assert cache.encode(texts[:50]) == expected[:50]
    assert cache.encode(texts) == expected  # a warm cache too
    stream, lengths = token_stream(tokenizer, texts, chunk=7)
    assert stream.dtype == np.int32 and lengths.tolist() == [len(e) for e in expected]
    assert stream.tolist() == [t for e in expected for t in e]


def test_a_padded_call_before_leaves_the_word_ids_alone(tokenizer):
    texts = ["alpha beta gamma, delta.", "IOTA"]
    tokenizer(["a", "a much longer text than that"], padding=True, truncation=True, max_length=3)
    assert token_ids(tokenizer, texts) == tokenizer(texts, add_special_tokens=False)["input_ids"]


def test_a_tokenizer_of_another_make_is_asked_itself(tokenizer):
    class Plain:
        """A tokenizer without a Rust backend: every text goes to its __call__."""

        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[len(w) for w in t.split()] for t in texts]}

    texts = ["one two three", "four"]
    assert token_ids(Plain(), texts) == [[3, 3, 5], [4]]


def test_an_index_from_one_stream_is_the_one_from_documents():
    rng = np.random.default_rng(3)
    docs = [rng.integers(1, 50, rng.integers(0, 30)).tolist() for _ in range(200)]
    built = NgramIndex.build(docs, separator=0)
    flat = np.array([t for d in docs for t in d], dtype=np.int32)
    streamed = NgramIndex.from_stream(flat, np.array([len(d) for d in docs]), separator=0)
    assert streamed.tokens.dtype == built.tokens.dtype
    assert np.array_equal(streamed.tokens, built.tokens)
    assert np.array_equal(streamed.sa, built.sa)
    assert np.array_equal(streamed.doc_starts, built.doc_starts)
    big = NgramIndex.from_stream(np.array([70_000, 3], dtype=np.int64), np.array([1, 1]))
    assert big.tokens.dtype == np.uint32 and big.documents([70_000]).tolist() == [0]


def test_a_bad_stream_is_refused_naming_the_document():
    with pytest.raises(ValueError, match="document 1 contains the separator"):
        NgramIndex.from_stream(np.array([4, 5, 0, 6]), np.array([2, 2]))
    with pytest.raises(ValueError, match="document 1 has token id -1"):
        NgramIndex.from_stream(np.array([4, -1]), np.array([1, 1]))
    with pytest.raises(ValueError, match="add up to 3 tokens"):
        NgramIndex.from_stream(np.array([4, 5]), np.array([1, 2]))
    with pytest.raises(ValueError, match="zero documents"):
        NgramIndex.from_stream(np.array([], dtype=np.int32), np.array([], dtype=np.int64))


def _whole_json_digest(corpus: Corpus, queries: TrainingQueries | None) -> str:
    """The digest as it was computed before it was streamed: one json.dumps of everything."""
    texts = corpus.full_texts()
    qtexts = [] if queries is None else queries.texts()
    pairs = [] if queries is None else queries.pairs(set(corpus.doc_ids))
    record = {
        "tokenizer_texts": texts + qtexts,
        "documents": [list(row) for row in zip(corpus.doc_ids, texts, strict=True)],
        "query_pairs": [list(pair) for pair in pairs],
    }
    return hashlib.sha256(json.dumps(record, ensure_ascii=False).encode("utf-8")).hexdigest()


def test_the_streamed_digest_is_the_whole_jsons():
    texts = _texts(random.Random(2), 40) + ['quote " and \\ back', "emoji 🙂", "nul\x00"]
    ids = [f"d{i}" for i in range(len(texts))]
    titles = ["T" if i % 3 == 0 else "" for i in range(len(texts))]
    corpus = Corpus(ids, titles, texts)
    assert training_data_digest(corpus, None) == _whole_json_digest(corpus, None)
    queries = TrainingQueries(
        {"q1": "what ✓", "q2": "more"}, {"q1": {"d1": 1, "d4": 2}, "q2": {"d0": 1}}
    )
    assert training_data_digest(corpus, queries) == _whole_json_digest(corpus, queries)


def test_scale_bench_runs_end_to_end_and_prints_one_json_object(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "bench.scale_bench", "--docs", "300", "--size", "tiny"]
    command += ["--steps", "3", "--searches", "3", "--vocab-size", "300", "--work", str(tmp_path)]
    command += ["--feedback-sample", "20"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["docs"] == 300 and result["training_steps"] == 3
    assert result["peak_rss_mb"] > 0 and result["seconds"] > 0
    stages = result["stages"]
    for name in ("tokenizer", "tokenize_documents", "ngram_index", "word_index", "examples"):
        assert stages[name]["within"] in ("build", "identifiers")
    for name in ("build", "training", "write", "load", "search"):
        assert stages[name]["seconds"] >= 0 and stages[name]["peak_rss_mb"] > 0
    assert result["peak_rss_mb"] >= max(s["peak_rss_mb"] for s in stages.values()) - 1
    feedback = result["feedback"]
    assert feedback["stages"] == ["feedback_sample"] and feedback["sampled_docs"] == 20
    assert feedback["extrapolated_cpu_seconds_all_docs"] == pytest.approx(
        feedback["cpu_seconds_per_doc"] * 300, rel=0.01, abs=0.1
    )
    assert (tmp_path / "index" / "manifest.json").exists()
    table = subprocess.run(
        [sys.executable, "-m", "bench.scale_bench", "--table", str(tmp_path / "r.json")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert table.returncode == 2 and "Cannot read" in table.stderr
    (tmp_path / "r.json").write_text(done.stdout)
    table = subprocess.run(
        [sys.executable, "-m", "bench.scale_bench", "--table", str(tmp_path / "r.json")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert table.stdout.splitlines()[2].startswith("| 300 |")


@pytest.mark.parametrize("chunk", [7, 50_000])
def test_the_word_index_built_in_chunks_holds_every_documents_words(chunk):
    from collections import Counter

    from docid.words import WordIndex, analyze

    rng = random.Random(4)
    vocabulary = ["tumour", "tumours", "cell", "cells", "the", "of", "growth", "Growing", "rna"]
    texts = [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 9))) for _ in range(60)]
    index = WordIndex.build(texts, chunk=chunk)
    expected: dict[str, dict[int, int]] = {}
    for doc, words in enumerate(analyze(texts)):
        for word, count in Counter(words).items():
            expected.setdefault(word, {})[doc] = count
    assert set(index.vocabulary) == set(expected)
    for word, i in index.vocabulary.items():
        start, end = index.offsets[i], index.offsets[i + 1]
        docs, counts = index.docs[start:end].tolist(), index.counts[start:end].tolist()
        assert dict(zip(docs, counts, strict=True)) == expected[word]
        assert index.docs[start:end].tolist() == sorted(expected[word])
    assert index.doc_lengths.tolist() == [len(w) for w in analyze(texts)]
