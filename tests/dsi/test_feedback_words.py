"""Feedback words read once, at index time: searches read the table instead of the model.

The n-gram kind's ``without_queries`` preset reranks with the words the model generates reading
the 5 best documents (:mod:`dsi.feedback`). ``dsi index`` and ``dsi add`` read every document
once (``NgramRetriever.prepare_feedback``) and save the table in ``feedback/``; a search must
then rank exactly as one that reads the documents itself, without running the model on them.
"""

from __future__ import annotations

import copy
import json
import logging
import random

import numpy as np
import pytest

from dsi.cli import main
from dsi.decoding import keep_heap_flat
from dsi.feedback import (
    FEEDBACK_DIR,
    FeedbackWords,
    document_windows,
    keep_table,
    model_fingerprint,
    read_documents,
)
from dsi.kinds import prepare_search
from dsi.ngram_retriever import NgramRetriever
from dsi.retriever import Retriever
from dsi.seal import WITHOUT_QUERIES, NgramGenerativeIndex
from tests.conftest import random_corpus, tiny_config


@pytest.fixture(scope="module")
def corpus():
    return random_corpus(random.Random(23), 12)


@pytest.fixture(scope="module")
def built(corpus):
    """An n-gram index trained without queries: its searches use feedback."""
    return NgramGenerativeIndex.build(corpus, tiny_config("ngram", steps=15), progress_bar=False)


def _queries(corpus) -> list[str]:
    return [corpus.texts[i][:50] for i in range(3)] + [corpus.titles[9], "unrelated words"]


def _ranked(hits) -> list[list[tuple[str, float]]]:
    return [[(h.doc_id, h.score) for h in row] for row in hits]


@pytest.mark.slow
def test_a_search_reads_the_table_and_ranks_as_reading_the_documents(built, corpus, tmp_path):
    retriever = NgramRetriever(built, device="cpu")
    assert retriever.options.feedback_docs > 0  # the without_queries preset
    assert built.feedback_words is None
    assert retriever.prepare_feedback(batch_size=1, progress_bar=False) == len(corpus)
    table = built.feedback_words
    assert table is not None and table.num_docs == len(corpus)
    assert table.beams == retriever.num_beams
    built.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert {f"{FEEDBACK_DIR}/feedback.json", f"{FEEDBACK_DIR}/words.npy"} <= set(
        manifest["checksums"]
    )

    loaded = Retriever.load(tmp_path / "idx", device="cpu")
    assert isinstance(loaded.index.feedback_words.words, np.memmap)
    # Reading at search time (the table set aside), one window at a time: no padding.
    table, loaded.index.feedback_words = loaded.index.feedback_words, None
    lazy = _ranked(loaded.search(_queries(corpus), k=5, batch_size=1))
    loaded = Retriever.load(tmp_path / "idx", device="cpu")

    def refuse(*args):
        raise AssertionError("the model read a document at search time")

    loaded.feedback.read = refuse
    stored = _ranked(loaded.search(_queries(corpus), k=5, batch_size=1))
    assert stored == lazy
    # Another beam count than the table's reads the documents again.
    loaded.feedback.read = retriever._read
    assert loaded.search(_queries(corpus)[:1], k=5, num_beams=3)


def test_reading_documents_keeps_the_heap_flat(built, corpus):
    """Reading documents (index time, or a search's cold path) fixes glibc's mmap threshold
    first: with the default one the heap grew ~8 MB a document read and never shrank."""
    keep_heap_flat.cache_clear()
    retriever = NgramRetriever(built, device="cpu")
    assert keep_heap_flat.cache_info().misses == 0  # a plain retriever leaves malloc alone
    # Another beam count than any stored table's: the model reads the documents.
    words = retriever.generated_words_of([0, 1], batch_size=2, num_beams=retriever.num_beams + 1)
    assert set(words) == {0, 1}
    assert keep_heap_flat.cache_info().misses == 1


def test_the_table_round_trips_and_refuses_damage(tmp_path):
    table = FeedbackWords.from_counts(4, [{"a": 2, "b": 1}, {}, {"b": 3, "c": 1}])
    assert table.num_docs == 3 and table.counts_of(1) == {}
    table.save(tmp_path / "fb")
    loaded = FeedbackWords.load(tmp_path / "fb")
    assert [loaded.counts_of(d) for d in range(3)] == [{"a": 2, "b": 1}, {}, {"b": 3, "c": 1}]
    more = loaded.extended(FeedbackWords.from_counts(4, [{"d": 1}]))
    assert more.num_docs == 4 and more.counts_of(3) == {"d": 1} and more.counts_of(2)["b"] == 3
    with pytest.raises(ValueError, match="beams"):
        loaded.extended(FeedbackWords.from_counts(5, [{}]))
    np.save(tmp_path / "fb" / "counts.npy", np.zeros(2, dtype=np.int32))
    with pytest.raises(ValueError, match="inconsistent"):
        FeedbackWords.load(tmp_path / "fb")


def _table_of(index) -> list[dict[str, int]]:
    table = index.feedback_words
    return [table.counts_of(doc) for doc in range(table.num_docs)]


def test_an_interrupted_read_resumes_from_what_was_kept(built, corpus, tmp_path, caplog):
    """A long read keeps what it has read; a later call by the same model reads only the rest
    and ends with the table an uninterrupted read makes; another model's kept table is not used."""
    whole = copy.copy(built)
    whole.feedback_words = None
    reader = NgramRetriever(whole, device="cpu")
    assert reader.prepare_feedback(progress_bar=False) == len(corpus)
    expected = _table_of(whole)

    kept: list[FeedbackWords] = []
    read_documents(corpus, reader._read, reader.num_beams, 4, 0, False, 4, kept.append, 0.0)
    assert [table.num_docs for table in kept] == [4, 8]  # not after the last chunk
    assert [kept[1].counts_of(doc) for doc in range(8)] == expected[:8]

    keep_in = tmp_path / "feedback"
    keep_table(keep_in, kept[1], model_fingerprint(reader.model))
    fresh = copy.copy(built)
    fresh.feedback_words = None
    resumed = NgramRetriever(fresh, device="cpu")
    windows = document_windows(corpus, range(8, len(corpus)))[0]
    seen: list[str] = []

    def read(texts, batch_size, beams):
        seen.extend(texts)
        return reader._read(texts, batch_size, beams)

    resumed._read = read
    assert resumed.prepare_feedback(progress_bar=False, keep_in=keep_in) == len(corpus) - 8
    assert sorted(seen) == sorted(windows)
    assert _table_of(fresh) == expected

    keep_table(keep_in, kept[1], "another model")
    fresh.feedback_words = None
    with caplog.at_level(logging.WARNING):
        assert resumed.prepare_feedback(progress_bar=False, keep_in=keep_in) == len(corpus)
    assert "another model or beam count" in caplog.text
    assert _table_of(fresh) == expected


def test_nothing_is_read_when_the_options_ask_for_no_feedback(corpus):
    # With training queries the preset has no feedback.
    from dsi.data import TrainingQueries

    training = TrainingQueries({"q0": corpus.titles[0]}, {"q0": {corpus.doc_ids[0]: 1}})
    index = NgramGenerativeIndex.build(
        corpus, tiny_config("ngram", steps=3), training, progress_bar=False
    )
    prepare_search(index, progress_bar=False)
    assert index.feedback_words is None


@pytest.mark.slow
def test_cli_index_and_add_read_the_documents_once(corpus, tmp_path, capsys):
    old, new = corpus.subset(corpus.doc_ids[:9]), corpus.subset(corpus.doc_ids[9:])
    docs = tmp_path / "old.jsonl"
    docs.write_text(
        "".join(
            json.dumps({"_id": d, "title": t, "text": x}) + "\n"
            for d, t, x in zip(old.doc_ids, old.titles, old.texts, strict=True)
        )
    )
    added = tmp_path / "new.jsonl"
    added.write_text(
        "".join(
            json.dumps({"_id": d, "title": t, "text": x}) + "\n"
            for d, t, x in zip(new.doc_ids, new.titles, new.texts, strict=True)
        )
    )
    sets = ["--set", "model_config.size=tiny", "--set", "model_config.vocab_size=120"]
    sets += ["--set", f"docid_options.preset={WITHOUT_QUERIES}", "--set", "train.batch_size=8"]
    code = main(["index", "--corpus", str(docs), "--output", str(tmp_path / "idx"), *sets,
                 "--max-steps", "3", "--quiet"])  # fmt: skip
    assert code == 0
    first = FeedbackWords.load(tmp_path / "idx" / FEEDBACK_DIR)
    assert first.num_docs == 9
    code = main(["add", "--index", str(tmp_path / "idx"), "--output", str(tmp_path / "grown"),
                 "--corpus", str(added), "--max-steps", "2", "--quiet"])  # fmt: skip
    assert code == 0
    grown = FeedbackWords.load(tmp_path / "grown" / FEEDBACK_DIR)
    # The documents indexed before keep what the model read at their build; the new ones are read.
    assert grown.num_docs == 12
    assert [grown.counts_of(d) for d in range(9)] == [first.counts_of(d) for d in range(9)]
    capsys.readouterr()
