"""NgramIndex against a brute-force reference, persistence and validation."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trie import fmindex
from trie.fmindex import NgramIndex

SEP = 0


def brute(docs: list[list[int]], ngram: tuple[int, ...]):
    """Reference answers by scanning every document."""
    k = len(ngram)
    count, follow, found, where = 0, Counter(), set(), []
    offset = 0
    for d, doc in enumerate(docs):
        for i in range(len(doc) - k + 1):
            if tuple(doc[i : i + k]) == ngram:
                count += 1
                found.add(d)
                where.append((d, offset + i))
                if i + k < len(doc):
                    follow[doc[i + k]] += 1
        offset += len(doc) + 1
    if k == 0:
        count = sum(len(d) for d in docs)
        found = set(range(len(docs)))
        where = []
    return count, follow, sorted(found), where


def check(index: NgramIndex, docs: list[list[int]], ngram: tuple[int, ...]) -> None:
    count, follow, found, where = brute(docs, ngram)
    assert index.count(ngram) == count
    ids, counts = index.next_tokens(ngram)
    assert dict(zip(ids.tolist(), counts.tolist(), strict=True)) == dict(follow)
    assert list(ids) == sorted(ids)
    assert index.documents(ngram).tolist() == found
    d, p = index.occurrences(ngram)
    assert list(zip(d.tolist(), p.tolist(), strict=True)) == where
    docs, tf = index.postings(ngram)
    per_doc = Counter(doc for doc, _ in where)
    assert dict(zip(docs.tolist(), tf.tolist(), strict=True)) == per_doc
    assert docs.tolist() == sorted(per_doc)


docs_strategy = st.lists(
    st.lists(st.integers(1, 4), min_size=0, max_size=12), min_size=1, max_size=6
)


@settings(max_examples=60, deadline=None)
@given(docs=docs_strategy, queries=st.lists(st.lists(st.integers(0, 5), max_size=4), max_size=12))
def test_matches_brute_force(docs, queries):
    index = NgramIndex.build(docs, separator=SEP)
    # Queries: arbitrary ones (absent ids, separator), every substring of every doc, then the
    # same again so cached blocks and cached next-token answers are exercised.
    subs = {
        tuple(doc[i:j]) for doc in docs for i in range(len(doc)) for j in range(i, len(doc) + 1)
    }
    todo = [tuple(q) for q in queries] + sorted(subs) + [()]
    for ngram in todo + todo[::-1]:
        check(index, docs, ngram)


@settings(max_examples=25, deadline=None)
@given(docs=docs_strategy, queries=st.lists(st.lists(st.integers(1, 4), max_size=5), max_size=10))
def test_binary_search_path(docs, queries):
    # Force element-wise binary search (used for blocks larger than _GATHER_LIMIT) and no cache.
    old = fmindex._GATHER_LIMIT
    fmindex._GATHER_LIMIT = 1
    try:
        index = NgramIndex.build(docs, separator=SEP, cache_size=0)
        for q in queries:
            check(index, docs, tuple(q))
    finally:
        fmindex._GATHER_LIMIT = old


@settings(max_examples=25, deadline=None)
@given(docs=docs_strategy, queries=st.lists(st.lists(st.integers(1, 4), max_size=5), max_size=10))
def test_pinned_cache_path(docs, queries):
    # Pin every block of 2+ suffixes (normally only huge ones) and keep the LRU tiny.
    old = fmindex._PIN_BLOCK
    fmindex._PIN_BLOCK = 2
    try:
        index = NgramIndex.build(docs, separator=SEP, cache_size=2)
        for q in queries + queries[::-1]:
            check(index, docs, tuple(q))
        index.clear_cache()
        for q in queries:
            check(index, docs, tuple(q))
    finally:
        fmindex._PIN_BLOCK = old


def test_large_ids_and_separator():
    big = [[70000, 5, 2**30], [5, 2**30, 70000, 5]]
    index = NgramIndex.build(big, separator=7)
    assert index.tokens.dtype == np.uint32
    for ngram in [(5,), (5, 2**30), (70000, 5), (2**30, 70000, 5), (7,), (5, 7), ()]:
        check(index, big, ngram)
    assert index.total_tokens == 7 and index.num_docs == 2
    assert index.doc_tokens(1).tolist() == big[1]


def test_build_errors():
    with pytest.raises(ValueError, match="zero documents"):
        NgramIndex.build([])
    with pytest.raises(ValueError, match="document 1 contains the separator"):
        NgramIndex.build([[1, 2], [3, 0, 4]], separator=0)
    with pytest.raises(ValueError, match="document 0 has token id -2"):
        NgramIndex.build([[1, -2]])
    with pytest.raises(ValueError, match="float64"):
        NgramIndex.build([[1.5]])


def test_cached_results_are_read_only():
    index = NgramIndex.build([[1, 2, 3, 1, 2, 4]])
    ids, _ = index.next_tokens((1, 2))
    with pytest.raises(ValueError):
        ids[0] = 9
    assert index.next_tokens((1, 2))[0].tolist() == [3, 4]
    docs, tf = index.postings((1, 2))
    with pytest.raises(ValueError):
        tf[0] = 9
    assert index.postings((1, 2))[1].tolist() == [2]


@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_roundtrip(tmp_path: Path, mmap: bool):
    rng = np.random.default_rng(0)
    docs = [rng.integers(1, 30, size=rng.integers(0, 40)).tolist() for _ in range(50)]
    index = NgramIndex.build(docs)
    names = index.save(tmp_path / "ix")
    expected = ["tokens.npy", "sa.npy", "doc_starts.npy", "unigrams.npy", "ngram_index.json"]
    assert sorted(names) == sorted(expected)
    assert not [p for p in (tmp_path / "ix").iterdir() if ".tmp" in p.name]
    loaded = NgramIndex.load(tmp_path / "ix", mmap=mmap)
    if mmap:
        assert isinstance(loaded.tokens, np.memmap) and isinstance(loaded.sa, np.memmap)
    # An index saved before the unigram table existed computes it on first use.
    (tmp_path / "old").mkdir()
    for name in expected:
        if name != "unigrams.npy":
            (tmp_path / "old" / name).write_bytes((tmp_path / "ix" / name).read_bytes())
    older = NgramIndex.load(tmp_path / "old", mmap=mmap)
    queries = [()] + [
        tuple(d[i : i + n]) for d in docs[:20] for i in range(0, 30, 7) for n in (1, 3)
    ]
    queries += [tuple(rng.integers(1, 30, size=2).tolist()) for _ in range(50)]
    for q in queries:
        for other in (loaded, older):
            assert other.count(q) == index.count(q)
            a, b = other.next_tokens(q), index.next_tokens(q)
            assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
            assert other.documents(q).tolist() == index.documents(q).tolist()


def test_a_wrong_unigram_table_is_refused(tmp_path: Path):
    NgramIndex.build([[1, 2, 3], [2, 3]]).save(tmp_path)
    table = np.load(tmp_path / "unigrams.npy")
    assert table.tolist() == [[0, 1, 2, 3], [2, 1, 2, 2]]  # the separator closes 2 documents
    table[1, 2] = 3
    np.save(tmp_path / "unigrams.npy", table)
    with pytest.raises(ValueError, match="not the unigram table"):
        NgramIndex.load(tmp_path, mmap=True)


def test_load_validation(tmp_path: Path):
    index = NgramIndex.build([[1, 2, 3], [2, 3]])
    index.save(tmp_path)
    with pytest.raises(ValueError, match="missing"):
        NgramIndex.load(tmp_path / "nowhere")
    header = json.loads((tmp_path / "ngram_index.json").read_text())

    bad = dict(header, version=99)
    (tmp_path / "ngram_index.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="unsupported version"):
        NgramIndex.load(tmp_path)

    (tmp_path / "ngram_index.json").write_text(json.dumps(header))
    np.save(tmp_path / "sa.npy", np.arange(3, dtype=np.int32))
    with pytest.raises(ValueError, match="sa.npy holds"):
        NgramIndex.load(tmp_path)

    np.save(tmp_path / "sa.npy", np.arange(7, dtype=np.int32) + 1)
    with pytest.raises(ValueError, match="outside"):
        NgramIndex.load(tmp_path)

    (tmp_path / "sa.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="not a readable numeric"):
        NgramIndex.load(tmp_path)

    (tmp_path / "ngram_index.json").write_text("{")
    with pytest.raises(ValueError, match="not readable JSON"):
        NgramIndex.load(tmp_path)
