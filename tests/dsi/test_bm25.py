"""BM25 baseline: the tiny example corpus, edge cases, and the SciFact / Cranfield references."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsi.bm25 import BM25Retriever
from dsi.data import Corpus, beir_split_paths, load_corpus, load_qrels, load_queries
from dsi.metrics import evaluate_run

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "examples" / "tiny"
SHARED = ROOT / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def tiny() -> BM25Retriever:
    return BM25Retriever().index(load_corpus(TINY))


def test_tiny_queries_find_their_document(tiny: BM25Retriever) -> None:
    queries = load_queries(TINY)
    qrels = load_qrels(TINY / "qrels" / "train.tsv") | load_qrels(TINY / "qrels" / "test.tsv")
    qids = sorted(qrels)
    results = tiny.search([queries[q] for q in qids], k=3)
    found = sum(
        any(doc_id in qrels[q] for doc_id, _ in hits) for q, hits in zip(qids, results, strict=True)
    )
    assert found / len(qids) >= 0.9


def test_results_are_sorted_matching_documents(tiny: BM25Retriever) -> None:
    (hits,) = tiny.search(["which town is famous for copper bells"], k=10)
    assert 0 < len(hits) <= 10
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(score > 0 for score in scores)
    assert all(isinstance(doc_id, str) for doc_id, _ in hits)


def test_empty_and_unknown_queries_give_no_hits(tiny: BM25Retriever) -> None:
    results = tiny.search(["", "the and of", "zzzqqq xxyyzz", "copper bells"], k=5)
    assert results[:3] == [[], [], []]
    assert results[3]


def test_k_larger_than_corpus_and_title_is_indexed() -> None:
    corpus = Corpus(["a", "b"], ["Gizmo", ""], ["a small tool", "a large tool"], source="mem")
    retriever = BM25Retriever().index(corpus)
    assert retriever.num_docs == 2
    (hits,) = retriever.search(["tools"], k=50)  # stemmed to the same term as "tool"
    assert sorted(doc_id for doc_id, _ in hits) == ["a", "b"]
    assert [doc_id for doc_id, _ in retriever.search(["gizmo"], k=5)[0]] == ["a"]


def test_misuse() -> None:
    with pytest.raises(RuntimeError, match="before index"):
        BM25Retriever().search(["x"])
    retriever = BM25Retriever().index(Corpus(["a"], [""], ["text"]))
    with pytest.raises(ValueError, match="k must be at least 1"):
        retriever.search(["text"], k=0)


def bm25_on(name: str) -> dict[str, float]:
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"shared data not found at {folder}")
    corpus = load_corpus(folder, skip_empty=True)  # Cranfield holds two empty documents
    queries_path, qrels_path = beir_split_paths(folder, "test")
    queries, qrels = load_queries(queries_path), load_qrels(qrels_path)
    qids = [q for q in qrels if q in queries]
    hits = BM25Retriever().index(corpus).search([queries[q] for q in qids], k=100)
    return evaluate_run(dict(zip(qids, hits, strict=True)), qrels)


def test_scifact_reference() -> None:
    result = bm25_on("scifact")
    assert result["num_queries"] == 300
    assert result["nDCG@10"] == pytest.approx(0.686, abs=0.003)
    assert result["Hits@1"] == pytest.approx(0.550, abs=0.004)
    assert result["Hits@10"] == pytest.approx(0.837, abs=0.004)


def test_cranfield_reference() -> None:
    result = bm25_on("cranfield")
    assert result["num_queries"] == 225
    assert result["nDCG@10"] == pytest.approx(0.373, abs=0.003)
