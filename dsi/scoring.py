"""Scoring stage of n-gram retrieval: documents ranked by what the model generated for a query.

The model generates n-grams (with their log-probabilities) and words; this stage turns them
into a ranking of the corpus, like a reranker of pyserini takes a query's candidates: BM25 over
the generated n-grams weighted by their probability (``docid.ngram.bm25_score``) or SEAL's
intersective score (``docid.ngram.seal_score``), plus ``word_weight`` times the BM25 of the
generated words over the corpus's stemmed words (``docid.words``), plus ``query_weight`` times
the BM25 of the query's own words over them. The settings are read from
an object with :class:`dsi.seal.SealOptions`' field names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from docid.ngram import best_logprobs, bm25_score, bm25_scores, seal_score
from docid.words import WordIndex
from trie.fmindex import NgramIndex

# An n-gram's token ids and its summed log-probability.
Scored = tuple[tuple[int, ...], float]


class Ranking(NamedTuple):
    """A ranking of the whole corpus as arrays: each document's score and whether it is ranked
    at all. A ranking of a million documents as a Python list of pairs costs seconds to sort."""

    scores: np.ndarray  # float64, one per document (0 where unranked)
    ranked: np.ndarray  # bool

    def top(self, k: int | None) -> list[tuple[int, float]]:
        """The ``k`` best ranked documents (all: None) as ``(doc, score)``, ties broken by lower
        index, as ``docid.ngram.best_first`` orders them."""
        docs = np.flatnonzero(self.ranked)
        if k is not None and len(docs) > k:
            values = self.scores[docs]
            kth = np.partition(values, len(values) - k)[len(values) - k]
            docs = docs[values >= kth]  # the k best, with every tie of the k-th
        docs = docs[np.lexsort((docs, -self.scores[docs]))][:k]
        return [(int(doc), float(self.scores[doc])) for doc in docs]


def score_documents(
    options: Any,
    ngrams: Sequence[Scored],
    index: NgramIndex,
    k: int | None,
    words: Sequence[str] = (),
    word_index: WordIndex | None = None,
    own_words: Sequence[str] = (),
) -> list[tuple[int, float]]:
    """``(doc_index, score)`` of the documents containing ``ngrams`` (or, when
    ``options.word_weight`` and ``word_index`` are set, any of the analysed ``words``; or, when
    ``options.query_weight`` is, any of the query's own analysed words ``own_words``), best
    first, cut to ``k`` (None: all)."""
    use_words = bool(options.word_weight and words and word_index is not None)
    use_own = bool(options.query_weight and own_words and word_index is not None)
    if not (use_words or use_own):
        return ngram_scores(options, ngrams, index, k)
    return score_corpus(options, ngrams, index, words, word_index, own_words).top(k)


def score_corpus(
    options: Any,
    ngrams: Sequence[Scored],
    index: NgramIndex,
    words: Sequence[str] = (),
    word_index: WordIndex | None = None,
    own_words: Sequence[str] = (),
) -> Ranking:
    """:func:`score_documents`' scores of every document, as a :class:`Ranking`."""
    scores = np.zeros(index.num_docs)
    if options.word_weight and words and word_index is not None:
        scores += options.word_weight * word_index.bm25(words, options.k1, options.b)
    if options.query_weight and own_words and word_index is not None:
        scores += options.query_weight * word_index.bm25(own_words, options.k1, options.b)
    ranking = Ranking(scores, scores != 0)
    if options.scoring == "bm25":  # arrays: a large index scores many documents an n-gram
        docs, scores = bm25_scores(list(ngrams), index, **_bm25_settings(options))
        ranking.scores[docs] += scores  # the word score, then the n-gram's
        ranking.ranked[docs] = True
        return ranking
    for doc, score in ngram_scores(options, ngrams, index, None):
        ranking.scores[doc] += score
        ranking.ranked[doc] = True
    return ranking


def _bm25_settings(options: Any) -> dict[str, Any]:
    """The n-gram BM25's settings in ``options``."""
    return {
        "gamma": options.gamma,
        "k1": options.k1,
        "b": options.b,
        "max_occurrences": options.max_occurrences,
    }


def ngram_scores(
    options: Any, ngrams: Sequence[Scored], index: NgramIndex, k: int | None
) -> list[tuple[int, float]]:
    """The documents containing ``ngrams`` by ``options.scoring``: "bm25" or "intersective"."""
    if options.scoring == "bm25":
        return bm25_score(list(ngrams), index, k=k, **_bm25_settings(options))
    return seal_score(
        list(ngrams),
        index,
        alpha=options.alpha,
        beta=options.beta,
        smoothing=options.smoothing,
        max_occurrences=options.max_occurrences,
        k=k,
    )


def word_scores(
    options: Any, words: Sequence[str], word_index: WordIndex, weight: float | None = None
) -> dict[int, float]:
    """``weight`` (default ``options.word_weight``) times the BM25 of ``words`` per document
    that holds any."""
    weight = options.word_weight if weight is None else weight
    scores = weight * word_index.bm25(words, options.k1, options.b)
    return {int(doc): float(scores[doc]) for doc in np.flatnonzero(scores)}


def contributions(
    options: Any,
    ngrams: Sequence[Scored],
    index: NgramIndex,
    docs: Sequence[int],
    words: Sequence[str] = (),
    word_index: WordIndex | None = None,
    own_words: Sequence[str] = (),
) -> dict[int, dict[str, list[tuple[Any, ...]]]]:
    """Per document of ``docs``, what :func:`score_documents` added up for it: under
    ``"ngrams"`` each distinct generated n-gram it holds as (n-gram, best log-probability,
    score), under ``"words"`` each scored word it holds as (word, score), under
    ``"query_words"`` each of the query's own words it holds as (word, score), best first.

    With "bm25" scoring (and for words, always) a document's scores sum to its score; SEAL's
    intersective score is no sum over n-grams, so there an n-gram's score is the one it would
    give the document alone.
    """
    wanted = set(docs)
    out: dict[int, dict[str, list[tuple[Any, ...]]]] = {
        d: {"ngrams": [], "words": [], "query_words": []} for d in docs
    }
    for ngram, logprob in best_logprobs(ngrams).items():
        for doc, score in ngram_scores(options, [(ngram, logprob)], index, None):
            if doc in wanted:
                out[doc]["ngrams"].append((ngram, logprob, score))
    if options.word_weight and words and word_index is not None:
        for word in dict.fromkeys(words):
            for doc, score in word_scores(options, [word], word_index).items():
                if doc in wanted:
                    out[doc]["words"].append((word, score))
    if options.query_weight and own_words and word_index is not None:
        for word in dict.fromkeys(own_words):
            for doc, score in word_scores(
                options, [word], word_index, options.query_weight
            ).items():
                if doc in wanted:
                    out[doc]["query_words"].append((word, score))
    for parts in out.values():
        for terms in parts.values():
            terms.sort(key=lambda term: -term[-1])
    return out
