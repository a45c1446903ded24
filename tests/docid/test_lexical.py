"""Title and keyword docids (docid.lexical): unique, deterministic, stable under add."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docid import DocidError, DocidMap, fit_docids
from docid.lexical import (
    NO_WORDS,
    UNTITLED,
    KeywordsDocidMap,
    TitleDocidMap,
    is_word,
    without_words,
)

TITLES = ["The Cat sat", "A dog ran", "the cat SAT", "", "The cat sat.", "A dog ran far"]
IDS = [f"d{i}" for i in range(len(TITLES))]


def test_title_docids_are_the_titles_words_with_a_suffix_for_repeats() -> None:
    m = fit_docids("title", IDS, TITLES)
    assert isinstance(m, TitleDocidMap)
    names = {d: m.symbol_names(d) for d in IDS}
    # Case and punctuation fold away, so d0, d2 and d4 share words: suffixes in corpus order.
    assert names["d0"] == ["the", "cat", "sat"]
    assert names["d2"] == ["the", "cat", "sat", "#2"]
    assert names["d4"] == ["the", "cat", "sat", "#3"]
    assert names["d1"] == ["a", "dog", "ran"]
    assert names["d5"] == ["a", "dog", "ran", "far"]
    assert names["d3"] == ["<untitled>"]
    assert len(set(m.sequences)) == len(IDS)
    assert m.docid_words("d2") == ["the", "cat", "sat"]
    assert m.docid_words("d3") == []
    # Deterministic: the same corpus gets the same docids.
    assert fit_docids("title", IDS, TITLES).sequences == m.sequences


def test_title_docids_are_cut_at_max_words_and_stay_unique() -> None:
    titles = ["alpha beta gamma delta", "alpha beta gamma epsilon", "alpha beta"]
    m = fit_docids("title", ["a", "b", "c"], titles, max_words=2)
    assert [m.symbol_names(d) for d in "abc"] == [
        ["alpha", "beta"],
        ["alpha", "beta", "#2"],
        ["alpha", "beta", "#3"],
    ]


def test_a_corpus_without_titles_is_refused_in_one_sentence() -> None:
    with pytest.raises(DocidError, match=r"^title docids need document titles, .*\.$"):
        fit_docids("title", ["a", "b"], ["", "  "])
    with pytest.raises(DocidError, match="only 'max_words'"):
        fit_docids("title", ["a"], ["x"], k=3)
    with pytest.raises(DocidError, match="positive integer"):
        fit_docids("keywords", ["a"], ["x"], max_words=0)


KEY_TEXTS = [
    "the heart pumps blood through the heart and the arteries",
    "the liver filters blood and the liver stores sugar",
    "a heart attack blocks the arteries of the heart",
    "the cat and the dog",
    "the dog and the cat",
    "",
]


def test_keyword_docids_are_the_most_distinctive_words_in_a_canonical_order() -> None:
    ids = [f"k{i}" for i in range(len(KEY_TEXTS))]
    m = fit_docids("keywords", ids, KEY_TEXTS, max_words=2)
    assert isinstance(m, KeywordsDocidMap)
    # 'liver' occurs twice in k1 and nowhere else: its weight is the highest there. 'blood' is
    # in two documents, so less distinctive than 'filters', 'stores' and 'sugar'.
    assert m.symbol_names("k1")[0] == "liver"
    assert "blood" not in m.symbol_names("k1")
    assert "the" not in m.symbols and "and" not in m.symbols  # stopwords never
    # The same words in another order give the same docid: the second copy gets a suffix.
    assert m.symbol_names("k3") == ["cat", "dog"]
    assert m.symbol_names("k4") == ["cat", "dog", "#2"]
    assert m.symbol_names("k5") == ["<no-words>"]
    assert len(set(m.sequences)) == len(ids)
    assert all(len(m.docid_words(d)) <= 2 for d in ids)
    assert fit_docids("keywords", ids, KEY_TEXTS, max_words=2).sequences == m.sequences


@pytest.mark.parametrize("scheme", ["title", "keywords"])
def test_add_keeps_old_docids_and_gives_new_documents_their_words(tmp_path, scheme) -> None:
    texts = TITLES if scheme == "title" else KEY_TEXTS
    ids = [f"x{i}" for i in range(len(texts))]
    m = fit_docids(scheme, ids, texts)
    before = list(m.sequences)
    symbols = list(m.symbols)
    m.save(tmp_path / "map")
    # The first new document has the words of two old ones (its docid is taken twice).
    new_texts = ["the cat sat" if scheme == "title" else "cat dog", "zebra stripes gallop"]
    seqs = m.add(["n0", "n1"], new_texts)
    assert m.sequences[: len(ids)] == before and m.symbols[: len(symbols)] == symbols
    assert len(set(m.sequences)) == len(m)
    assert m.symbol_names("n0")[-1] == ("#4" if scheme == "title" else "#3")
    assert {"zebra", "stripes", "gallop"} >= set(m.docid_words("n1"))
    assert m.docid_words("n1")
    assert [m.lookup(s) for s in seqs] == ["n0", "n1"]
    # A map read back from its files adds exactly the same docids.
    loaded = DocidMap.load(tmp_path / "map")
    assert type(loaded) is type(m)
    assert loaded.add(["n0", "n1"], new_texts) == seqs
    # And saving after the add keeps what the next add needs.
    m.save(tmp_path / "after")
    again = DocidMap.load(tmp_path / "after")
    assert again.sequences == m.sequences
    if scheme == "keywords":
        assert again.stats == m.stats and m.stats.num_docs == len(m)


def test_keyword_statistics_file_must_agree_with_the_map(tmp_path) -> None:
    m = fit_docids("keywords", ["a", "b"], ["red apple", "green pear"])
    m.save(tmp_path)
    stats = tmp_path / "keyword_stats.json"
    stats.write_text(stats.read_text().replace('"num_docs": 2', '"num_docs": 3'))
    with pytest.raises(DocidError, match="counts 3 documents but the map holds 2"):
        DocidMap.load(tmp_path)
    stats.unlink()
    with pytest.raises(DocidError, match="does not exist"):
        DocidMap.load(tmp_path)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["ab", "cd", "ef", "Ab", "x"]), min_size=0, max_size=3),
        min_size=1,
        max_size=25,
    ),
    st.sampled_from(["title", "keywords"]),
)
def test_docids_are_unique_and_invert_for_any_corpus(word_lists, scheme) -> None:
    texts = [" ".join(words) for words in word_lists]
    ids = [f"d{i}" for i in range(len(texts))]
    if scheme == "title" and not any(texts):
        return  # refused: tested above
    m = fit_docids(scheme, ids, texts, max_words=2)
    assert len(set(m.sequences)) == len(ids)
    assert all(m.lookup(m.sequence(d)) == d for d in ids)
    # Adding the same texts again under new ids keeps everything unique.
    rng = random.Random(len(texts))
    extra = rng.sample(texts, k=min(3, len(texts)))
    m.add([f"n{i}" for i in range(len(extra))], extra)
    assert len(set(m.sequences)) == len(m)


def test_without_words_removes_whole_words_whatever_their_case() -> None:
    text = "The Cat sat on the category mat. CAT!"
    assert without_words(text, ["cat", "the"]) == "sat on category mat. !"


def test_words_are_told_from_suffixes_and_placeholders() -> None:
    """What dsi.docid_tokens writes in the tokenizer's pieces (words) and as new tokens."""
    m = TitleDocidMap.fit(IDS, TITLES)
    assert {s for s in m.symbols if not is_word(s)} == {"#2", "#3", UNTITLED}
    assert is_word("cat") and is_word("α2") and not is_word(NO_WORDS) and not is_word("a b")
