"""docid.words: stemmed word postings and their BM25, against bm25s on the same texts."""

from __future__ import annotations

import json

import bm25s
import numpy as np
import pytest

from docid.words import WordIndex, analyze

TEXTS = [
    "Tumours grow in the liver.",
    "A tumour of the lung; the tumour shrank.",
    "The heart and the liver.",
    "",
    "Growing hearts, growing livers and growing lungs in mice.",
]


def test_analyze_stems_and_drops_stopwords():
    assert analyze(["The tumours and the growing", "and the"]) == [["tumour", "grow"], []]


def test_bm25_matches_bm25s_on_the_same_texts():
    index = WordIndex.build(TEXTS)
    assert index.num_docs == len(TEXTS)
    assert index.doc_lengths.tolist() == [len(words) for words in analyze(TEXTS)]
    reference = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    reference.index(analyze(TEXTS, return_ids=True), show_progress=False)
    for query in (["tumour"], ["liver", "grow"], ["heart", "lung", "mice", "tumour"]):
        # Lucene's BM25 in bm25s leaves out the constant (k1 + 1) of the numerator.
        expected = reference.get_scores(query) * (1.2 + 1)
        assert index.bm25(query, k1=1.2, b=0.75) == pytest.approx(expected, rel=1e-5)


def test_bm25_finds_inflected_forms_and_ignores_unknown_words():
    index = WordIndex.build(TEXTS)
    scores = index.bm25(analyze(["tumours"])[0])
    assert set(np.flatnonzero(scores).tolist()) == {0, 1}
    assert scores[1] > scores[0]  # twice in document 1
    assert index.bm25(["zebra"]).tolist() == [0.0] * len(TEXTS)
    # A word counts once however often the query names it.
    assert index.bm25(["liver", "liver"]).tolist() == index.bm25(["liver"]).tolist()


def test_save_load_round_trip_and_validation(tmp_path):
    index = WordIndex.build(TEXTS)
    index.save(tmp_path / "words")
    assert sorted(p.name for p in (tmp_path / "words").iterdir()) == [
        "postings.npz",
        "word_index.json",
    ]
    loaded = WordIndex.load(tmp_path / "words")
    assert loaded.vocabulary == index.vocabulary
    for query in (["tumour"], ["grow", "liver", "lung"]):
        assert loaded.bm25(query).tolist() == index.bm25(query).tolist()

    header_path = tmp_path / "words" / "word_index.json"
    header = json.loads(header_path.read_text())
    header_path.write_text(json.dumps({**header, "version": 99}))
    with pytest.raises(ValueError, match="version 99; this dsi reads"):
        WordIndex.load(tmp_path / "words")
    header_path.write_text(json.dumps({**header, "num_docs": 3}))
    with pytest.raises(ValueError, match="array sizes disagree"):
        WordIndex.load(tmp_path / "words")
    (tmp_path / "words" / "postings.npz").unlink()
    with pytest.raises(ValueError, match="cannot be read"):
        WordIndex.load(tmp_path / "words")


def test_empty_corpus_and_empty_documents():
    index = WordIndex.build(["", "the and"])
    assert index.num_docs == 2 and index.vocabulary == {}
    assert index.bm25(["liver"]).tolist() == [0.0, 0.0]


def test_an_expanded_index_says_so_after_saving_and_loading(tmp_path):
    texts = ["the river stone", "a copper basket"]
    plain = WordIndex.build(texts)
    expanded = WordIndex.build([texts[0] + " where are river stones", texts[1]], expanded=True)
    assert not plain.expanded and expanded.expanded
    for made, name in ((plain, "plain"), (expanded, "expanded")):
        made.save(tmp_path / name)
        loaded = WordIndex.load(tmp_path / name, mmap=True)
        assert loaded.expanded == made.expanded
        assert loaded.doc_lengths.tolist() == made.doc_lengths.tolist()
    # An index of documents alone keeps the header bytes it had before expansion existed.
    assert "expanded" not in (tmp_path / "plain" / "word_index.json").read_text()
