"""Feedback stage of n-gram retrieval: generative pseudo-relevance feedback, optional.

The model reads each of the ``feedback_docs`` best documents of a first ranking in windows, as
it read documents in training; the ``feedback_words`` words it generates most often there score
documents too (BM25 weighted by their share), scaled so that the best of them scores
``feedback_weight`` times the first ranking's best. Like a reranker of pyserini it takes
rankings and returns rankings; what the model generates for a text comes from the retriever
(``read``). The settings are read from an object with :class:`dsi.seal.SealOptions`' names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from docid.ngram import best_first
from docid.words import WordIndex
from dsi.data import Corpus

# Feedback reads documents in windows as long as the longest the model was trained to copy from
# (docid.ngram.salient_span_pairs' source_words).
FEEDBACK_WINDOW_WORDS = 24

# What the retriever's model generates reading texts: (texts, batch size, beams) -> the
# analysed words generated for each text.
Reader = Callable[[list[str], int, int], list[list[str]]]


def add_feedback(
    options: Any,
    ranked: list[tuple[int, float]],
    shares: Sequence[Mapping[str, float]],
    word_index: WordIndex,
    k: int | None,
) -> list[tuple[int, float]]:
    """``ranked`` (a full first ranking, best first) plus the BM25 of the ``feedback_words``
    words with the largest summed share in ``shares`` (one mapping of word -> share per
    document read), scaled so that its best document gets ``feedback_weight`` times
    ``ranked``'s best score; best first, cut to ``k``."""
    weights: dict[str, float] = {}
    for document in shares:
        for word, share in document.items():
            weights[word] = weights.get(word, 0.0) + share
    heaviest = sorted(weights.items(), key=lambda item: (-item[1], item[0]))
    extra = word_index.weighted_bm25(
        dict(heaviest[: options.feedback_words]), options.k1, options.b
    )
    scores = dict(ranked)
    if ranked and extra.max() > 0:
        scale = options.feedback_weight * ranked[0][1] / extra.max()
        for doc in np.flatnonzero(extra).tolist():
            scores[doc] = scores.get(doc, 0.0) + scale * float(extra[doc])
    return best_first(list(scores.items()), k)


class GenerativeFeedback:
    """The feedback stage of one retriever: its model reads documents through ``read``; what it
    generated per document is cached, as the model does not change under a retriever. The
    settings come with each call (a retriever's options may change between searches)."""

    def __init__(self, index: Any, read: Reader) -> None:
        # An n-gram index: its ``corpus`` is read and its ``words`` score, as they are at the
        # time of the search.
        self.index = index
        self.read = read
        # Per beam count, per document index: words_of's result.
        self._cache: dict[int, dict[int, dict[str, float]]] = {}

    @staticmethod
    def wanted(options: Any) -> bool:
        """Whether ``options`` ask for feedback at all."""
        return options.feedback_docs > 0 and options.feedback_weight > 0

    def rerank(
        self,
        options: Any,
        rankings: list[list[tuple[int, float]]],
        k: int,
        batch_size: int,
        beams: int,
    ) -> list[list[tuple[int, float]]]:
        """Each full first ranking plus the BM25 of the words generated from its best
        documents (``options.feedback_docs``), cut to ``k``."""
        best_docs = [[doc for doc, _ in ranked[: options.feedback_docs]] for ranked in rankings]
        shares = self.words_of(sorted({d for docs in best_docs for d in docs}), batch_size, beams)
        words = self.index.words
        return [
            add_feedback(options, ranked, [shares[doc] for doc in docs], words, k)
            for ranked, docs in zip(rankings, best_docs, strict=True)
        ]

    def words_of(
        self, docs: Sequence[int], batch_size: int, beams: int
    ) -> dict[int, dict[str, float]]:
        """Per document (by index), the analysed words the model generates reading it in
        windows of ``FEEDBACK_WINDOW_WORDS`` words, each with its share of them (a word counts
        once per window)."""
        cache = self._cache.setdefault(beams, {})
        missing = [doc for doc in dict.fromkeys(docs) if doc not in cache]
        if missing:
            corpus: Corpus = self.index.corpus
            windows, owners = [], []
            for doc in missing:
                # Title and text, as the model was trained on them (Corpus.full_texts, one document).
                words = f"{corpus.titles[doc]} {corpus.texts[doc]}".split()
                for start in range(0, max(len(words), 1), FEEDBACK_WINDOW_WORDS):
                    windows.append(" ".join(words[start : start + FEEDBACK_WINDOW_WORDS]))
                    owners.append(doc)
            counts: dict[int, dict[str, int]] = {doc: {} for doc in missing}
            for doc, words in zip(owners, self.read(windows, batch_size, beams), strict=True):
                for word in set(words):
                    counts[doc][word] = counts[doc].get(word, 0) + 1
            for doc, counted in counts.items():
                total = sum(counted.values()) or 1
                cache[doc] = {word: n / total for word, n in counted.items()}
        return {doc: cache[doc] for doc in docs}
