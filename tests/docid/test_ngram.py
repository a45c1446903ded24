"""SEAL training pairs and intersective scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from docid.ngram import (
    bm25_score,
    bm25_scores,
    ngram_weight,
    salient_span_pairs,
    seal_score,
    supervised_pairs,
    unsupervised_pairs,
)

TEXT = (
    "The mitochondria of muscle cells produce energy through oxidative phosphorylation , "
    "while glycolysis in the cytoplasm yields lactate under hypoxia . Exercise training "
    "increases mitochondrial density in skeletal muscle of older adults ."
)
TITLE = "Mitochondrial adaptations to exercise"


def words_in(span: str, text: str) -> bool:
    return f" {span} " in f" {' '.join(text.split())} "


def test_supervised_pairs_title_and_overlapping_spans():
    query = "does exercise increase mitochondrial density in muscle?"
    pairs = supervised_pairs([(query, TITLE, TEXT)], spans_per_query=4, seed=3)
    assert pairs[0] == (query, TITLE)
    spans = [t for _, t in pairs[1:]]
    assert 1 <= len(spans) <= 4 and len(set(spans)) == len(spans)
    for span in spans:
        assert words_in(span, TEXT)
        assert 3 <= len(span.split()) <= 10
        # Spans start at a word overlapping the query within three words.
        head = {w.lower().strip("?,.") for w in span.split()[:3]}
        assert head & {"exercise", "mitochondrial", "density", "muscle"}
    assert pairs == supervised_pairs([(query, TITLE, TEXT)], spans_per_query=4, seed=3)


def test_supervised_pairs_no_overlap_and_empty():
    pairs = supervised_pairs([("zebra", "", TEXT), ("q", "T", "")], seed=0)
    assert pairs[0][0] == "zebra" and TEXT.startswith(pairs[0][1])
    assert pairs[1:] == [("q", "T")]
    with pytest.raises(ValueError, match="span lengths"):
        supervised_pairs([("q", "t", TEXT)], min_words=5, max_words=2)


def test_unsupervised_pairs():
    docs = [(TITLE, TEXT), ("Short", "only three words"), ("Empty", "")]
    pairs = unsupervised_pairs(docs, pairs_per_doc=3, seed=7)
    assert pairs == unsupervised_pairs(docs, pairs_per_doc=3, seed=7)
    assert pairs != unsupervised_pairs(docs, pairs_per_doc=3, seed=8)
    first = [p for p in pairs if words_in(p[1], TEXT)]
    assert first[0][0] == TITLE
    for source, target in first[1:4]:
        assert words_in(source, TEXT) and words_in(target, TEXT)
        assert 10 <= len(source.split()) <= 30 and 3 <= len(target.split()) <= 10
    short = [p for p in pairs if p[1] == "only three words"]
    assert len(short) == 4  # title -> span and 3 span -> span, all the whole text
    assert not [p for p in pairs if p[0] == "Empty"]


def test_salient_span_pairs_copy_rare_spans_of_their_source():
    filler = "the cells of the study were measured in the study of the cells and the results ."
    docs = [f"{filler} zymogen granules {filler}", TEXT, "", "of the and"] + [filler] * 30
    pairs = salient_span_pairs(docs, pairs_per_doc=20, word_dropout=0.3, rarity=2.0, seed=4)
    assert pairs == salient_span_pairs(docs, pairs_per_doc=20, word_dropout=0.3, rarity=2.0, seed=4)
    assert pairs != salient_span_pairs(docs, pairs_per_doc=20, word_dropout=0.3, rarity=2.0, seed=5)
    # Documents without content words (empty, all stopwords) give no pairs.
    assert len(pairs) == 20 * 32
    first = pairs[:20]
    for source, target in pairs[:40]:
        assert 1 <= len(target.split()) <= 4
        assert words_in(target, docs[0]) or words_in(target, TEXT)
        # The target is inside the (noisy) source: the model learns to copy.
        assert words_in(target, source)
        assert target.split()[0].lower().strip(",.") not in {"the", "of", "and", "in"}
    # Rare words are drawn as anchors far more often than their share of positions.
    rare = sum(t.split()[0] in {"zymogen", "granules"} for _, t in first)
    assert rare >= 10
    with pytest.raises(ValueError, match="word_dropout"):
        salient_span_pairs(docs, word_dropout=1.0)


def test_ngram_weight_formula():
    lp, count, total = math.log(0.3), 4, 1000
    p = count / total
    expected = math.log(0.3 * (1 - p) / (p * (1 - 0.3)))
    assert ngram_weight(lp, count, total) == pytest.approx(expected)
    assert ngram_weight(math.log(1e-5), count, total) == 0.0  # below the prior: no evidence
    assert ngram_weight(0.0, count, total) > 0  # log-prob 0 is clamped, not infinite
    assert ngram_weight(-1.0, 0, total) == 0.0


class ListIndex:
    """Brute-force stand-in with the methods seal_score uses."""

    def __init__(self, docs: list[list[int]]) -> None:
        self.docs = docs
        self.starts = np.cumsum([0] + [len(d) + 1 for d in docs[:-1]])

    @property
    def total_tokens(self) -> int:
        return sum(len(d) for d in self.docs)

    @property
    def doc_lengths(self) -> np.ndarray:
        return np.array([len(d) for d in self.docs])

    def occurrences(self, ngram):
        k, out = len(ngram), []
        for d, doc in enumerate(self.docs):
            out += [
                (d, int(self.starts[d]) + i)
                for i in range(len(doc) - k + 1)
                if tuple(doc[i : i + k]) == tuple(ngram)
            ]
        return np.array([d for d, _ in out]), np.array([p for _, p in out])

    def postings(self, ngram):
        docs, _ = self.occurrences(ngram)
        return np.unique(docs, return_counts=True)

    def count(self, ngram) -> int:
        return len(self.occurrences(ngram)[0])


def test_seal_score_overlap_and_ranking():
    filler = [[50 + i] * 30 for i in range(3)]  # keep P(n) small
    docs = [[1, 2, 3, 4], [2, 3, 9], [7, 8, 1, 2], *filler]
    index = ListIndex(docs)
    ngrams = [
        ((1, 2, 3), -0.5),
        ((2, 3), -1.0),
        ((7, 8), -2.0),
        ((42,), -0.1),
        ((1, 2, 3), -3.0),
    ]
    ranked = seal_score(ngrams, index, alpha=1.0, beta=0.0, smoothing=0.0)
    total = index.total_tokens
    w123 = ngram_weight(-0.5, 1, total)
    w23 = ngram_weight(-1.0, 2, total)
    w78 = ngram_weight(-2.0, 1, total)
    w12_in_doc2 = 0.0  # (1, 2) alone was not generated
    # Doc 0: (2, 3) lies inside the better (1, 2, 3): only the best counts.
    # Doc 1: (2, 3) is free there. Doc 2: (7, 8).
    expected = {0: w123, 1: w23, 2: w78 + w12_in_doc2}
    assert dict(ranked) == pytest.approx(expected)
    assert [d for d, _ in ranked] == sorted(expected, key=lambda d: -expected[d])
    # Coverage factor (beta) discounts an n-gram whose tokens a better one already used.
    docs2 = [[1, 2, 3, 9, 2, 3], *filler]
    ranked2 = seal_score([((1, 2), -0.5), ((2, 3), -0.5)], ListIndex(docs2), alpha=1.0, beta=0.5)
    idx2 = ListIndex(docs2)
    a = ngram_weight(-0.5, 1, idx2.total_tokens, 5.0)
    b = ngram_weight(-0.5, 2, idx2.total_tokens, 5.0)
    assert ranked2 == [(0, pytest.approx(a + b * (1 - 0.5 + 0.5 * 1 / 2)))]
    assert seal_score([], index) == []
    assert len(seal_score(ngrams, index, smoothing=0.0, k=1)) == 1


def test_seal_score_with_real_index():
    from trie.fmindex import NgramIndex

    rng = np.random.default_rng(0)
    docs = [rng.integers(2, 40, size=30).tolist() for _ in range(40)]
    index = NgramIndex.build(docs)
    ngrams = [
        (tuple(docs[d][i : i + n]), -float(n)) for d in (3, 7, 7) for i, n in ((2, 3), (10, 2))
    ]
    ranked = seal_score(ngrams, index, max_occurrences=10**6)
    assert ranked == seal_score(ngrams, ListIndex(docs), max_occurrences=10**6)
    assert {3, 7} <= {d for d, _ in ranked}
    for d, _ in ranked:
        doc = docs[d]
        assert any(tuple(doc[i : i + len(g)]) == g for g, _ in ngrams for i in range(len(doc)))


def test_bm25_score_by_hand():
    # Doc 0 has (1, 2) twice and is short; doc 1 has it once and is long; doc 2 lacks it.
    docs = [[1, 2, 1, 2], [1, 2, 5, 5, 5, 5, 5, 5], [7, 8, 9]]
    index = ListIndex(docs)
    k1, b, gamma = 1.2, 0.75, 0.5
    avgdl = (4 + 8 + 3) / 3
    ngrams = [((1, 2), -1.0), ((1, 2), -3.0), ((7, 8), -2.0), ((42,), -0.1)]
    ranked = bm25_score(ngrams, index, gamma=gamma, k1=k1, b=b)

    def term(logprob, df, tf, length):
        idf = math.log(1 + (3 - df + 0.5) / (df + 0.5))
        norm = tf + k1 * (1 - b + b * length / avgdl)
        return math.exp(gamma * logprob) * idf * tf * (k1 + 1) / norm

    expected = {0: term(-1.0, 2, 2, 4), 1: term(-1.0, 2, 1, 8), 2: term(-2.0, 1, 1, 3)}
    assert dict(ranked) == pytest.approx(expected)  # the best log-prob of (1, 2) counts, once
    assert [d for d, _ in ranked] == sorted(expected, key=lambda d: -expected[d])
    assert bm25_score([], index) == []
    assert len(bm25_score(ngrams, index, k=1)) == 1
    only_rare = bm25_score(ngrams, index, gamma=gamma, k1=k1, b=b, max_occurrences=1)
    assert only_rare == [(2, pytest.approx(expected[2]))]
    # A probable n-gram outweighs an improbable one; gamma = 0 makes the model's probability moot.
    flat = dict(bm25_score([((1, 2), -1.0), ((7, 8), -9.0)], index, gamma=0.0))
    assert flat[2] > flat[1]
    assert dict(bm25_score([((1, 2), -1.0), ((7, 8), -9.0)], index, gamma=1.0))[2] < flat[2]


def test_bm25_score_with_real_index():
    from trie.fmindex import NgramIndex

    rng = np.random.default_rng(1)
    docs = [rng.integers(2, 40, size=int(rng.integers(5, 40))).tolist() for _ in range(40)]
    index = NgramIndex.build(docs)
    assert index.doc_lengths.tolist() == [len(d) for d in docs]
    ngrams = [(tuple(docs[d][i : i + 2]), -float(d % 3)) for d in (3, 7, 9) for i in (0, 2)]
    ranked = bm25_score(ngrams, index, max_occurrences=10**6)
    brute = bm25_score(ngrams, ListIndex(docs), max_occurrences=10**6)
    assert [d for d, _ in ranked] == [d for d, _ in brute]
    assert [s for _, s in ranked] == pytest.approx([s for _, s in brute])
    assert {3, 7, 9} <= {d for d, _ in ranked}
    # The arrays a whole-corpus ranking adds in: the same documents and the same floats.
    docs_, scores = bm25_scores(ngrams, index, max_occurrences=10**6)
    assert docs_.tolist() == sorted(d for d, _ in ranked)
    assert dict(zip(docs_.tolist(), scores.tolist(), strict=True)) == dict(ranked)
    # Summed in the n-grams' order, as a running sum per document would.
    expected: dict[int, float] = {}
    for doc, tf_gain in _running_sums(ngrams, index):
        expected[doc] = expected.get(doc, 0.0) + tf_gain
    assert dict(ranked) == {d: v for d, v in expected.items() if v > 0}


def _running_sums(ngrams, index, gamma=0.25, k1=1.2, b=0.75):
    """(document, gain) per n-gram occurrence's document, in the n-grams' order (the loop
    bm25_score replaced)."""
    from docid.ngram import best_logprobs

    lengths = index.doc_lengths
    average = int(index.total_tokens) / len(lengths)
    for key, logprob in best_logprobs(ngrams).items():
        if int(index.count(key)) == 0:
            continue
        docs, tf = np.unique(index.occurrences(key)[0], return_counts=True)
        idf = math.log1p((len(lengths) - len(docs) + 0.5) / (len(docs) + 0.5))
        weight = math.exp(gamma * min(logprob, 0.0)) * idf
        gains = weight * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * lengths[docs] / average))
        yield from zip(docs.tolist(), gains.tolist(), strict=True)
