"""The ``language`` setting: the stemmer and stopwords of the lexical parts follow it, English
stays exactly what it was, and an unknown language is one sentence."""

from __future__ import annotations

import json

import bm25s
import pytest
import Stemmer

from docid.ngram import STOPWORDS, span_stopwords, supervised_pairs
from docid.words import WordIndex, analyze, check_language, languages, stopword_list, stopwords
from dsi.baselines import build_baseline
from dsi.bm25 import BM25Retriever
from dsi.config import IndexConfig
from dsi.data import Corpus
from tests.conftest import REPO
from tests.dsi.test_cli import TINY, dsi

TEXTS = ["The horses were running to the stables", "Les chevaux mangent", "Die Häuser und Gärten"]


def test_english_is_the_analysis_it_always_was():
    before = bm25s.tokenize(
        TEXTS, stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=False
    )
    assert analyze(TEXTS) == analyze(TEXTS, language="english") == before
    assert span_stopwords() is STOPWORDS and span_stopwords("english") is STOPWORDS
    assert IndexConfig().language == "english"
    assert IndexConfig().to_dict()["language"] == "english"  # saved in index.json
    german = IndexConfig().updated({"language": "german"})
    assert german.language == "german" and IndexConfig.from_dict(german.to_dict()) == german


def test_other_languages_stem_and_drop_their_own_words():
    assert analyze(["Die Häuser und die Gärten"], language="german") == [["haus", "gart"]]
    assert "und" in span_stopwords("german") and "und" not in STOPWORDS
    # Finnish has a Snowball stemmer but bm25s has no stopword list for it: stems only.
    assert stopwords("finnish") == [] and stopword_list("finnish") == []
    assert analyze(["talon ja talot"], language="finnish") == [["talo", "ja", "talo"]]
    assert set(stopword_list("english")) == set(bm25s.stopwords.STOPWORDS_EN)
    assert "english" in languages() and "porter" not in languages()


def test_bm25_matches_inflections_in_the_corpus_language():
    corpus = Corpus(["d1", "d2"], ["", ""], ["les chevaux mangent", "le chat dort"])
    french = BM25Retriever(language="french").index(corpus)
    assert [d for d, _ in french.search(["cheval"])[0]] == ["d1"]
    # English stems leave "chevaux" alone, so the query does not reach it.
    assert BM25Retriever().index(corpus).search(["cheval"])[0] == []
    baseline = build_baseline("bm25+rm3", corpus, language="french")
    assert baseline.parameters()["language"] == "french"
    assert "language" not in build_baseline("bm25", corpus).parameters()


def test_word_index_keeps_its_language(tmp_path):
    english = WordIndex.build(TEXTS)
    english.save(tmp_path / "en")
    header = json.loads((tmp_path / "en" / "word_index.json").read_text())
    assert "language" not in header, "an English word index keeps the bytes it had"
    assert WordIndex.load(tmp_path / "en").language == "english"
    german = WordIndex.build(TEXTS, "german")
    german.save(tmp_path / "de")
    loaded = WordIndex.load(tmp_path / "de")
    assert loaded.language == "german" and loaded.vocabulary == german.vocabulary
    assert "haus" in loaded.vocabulary and "hauser" not in loaded.vocabulary


def test_span_targets_skip_the_languages_stopwords():
    # Query overlap starts spans: with German stopwords "und" is no overlap, so the span
    # starts at "Gärten", the only shared content word.
    examples = [("und Gärten", "", "und und und und Gärten blühen im Sommer schön")]
    german = supervised_pairs(examples, spans_per_query=1, stopwords=span_stopwords("german"))
    assert all(span.startswith("Gärten") for _, span in german), german


def test_unknown_language_is_one_sentence():
    with pytest.raises(ValueError, match=r"^Unknown language 'klingon'; the known ones") as exc:
        IndexConfig(language="klingon")
    assert "english, esperanto" in str(exc.value) and str(exc.value).endswith(".")
    with pytest.raises(ValueError, match="Unknown language"):
        check_language("porter")
    proc = dsi(
        *("index", "--corpus", str(REPO / "examples" / "tiny"), "--output", "unused"),
        *("--set", "language=klingon"),
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("dsi: error: Unknown language 'klingon'")
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_an_ngram_index_in_german_analyses_in_german(tmp_path):
    from dsi.retriever import Retriever

    out = tmp_path / "idx"
    dsi(
        *("index", "--corpus", str(REPO / "examples" / "tiny"), "--output", str(out)),
        *("--max-steps", "2", "--set", "language=german", *TINY, "--docids", "ngram", "--quiet"),
    )
    retriever = Retriever.load(out)
    assert retriever.index.config.language == "german"
    assert retriever.index.words.language == "german"
    assert retriever.search(["clocks made of tin"], k=3)[0]
