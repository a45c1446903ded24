"""N-gram identifiers (SEAL): any substring of a document identifies it.

Training data is made at the *text* level, over whitespace-separated words, so that spans are
word-aligned and tokenize the same way alone as inside the document; the model side tokenizes
``(source_text, target_text)`` pairs with its own tokenizer and builds the n-gram index over
``tokenize(title + " " + text)`` of each document, so titles and spans are corpus n-grams.

* :func:`supervised_pairs`: query -> the relevant document's title, and query -> spans of 3-10
  words of it. A span starts at a word position drawn with probability proportional to
  ``exp(overlap / temperature)``, where ``overlap`` counts the query's content words among the
  three words from that position (SEAL samples spans by their overlap with the query).
* :func:`unsupervised_pairs`: a random span of a document -> another span of it, and title ->
  span (SEAL's unsupervised "document-to-ngram" data, which teaches what each document holds).
* :func:`salient_span_pairs`: a noisy window of a document -> a span inside it that starts at a
  rare word (copying, learnt from documents alone).
* :func:`seal_score`: SEAL's intersective scoring of the n-grams that constrained beam search
  generated, over an index (``trie.fmindex.NgramIndex`` or anything with the same methods).

All functions are deterministic for a given ``seed``.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from docid.words import DEFAULT_LANGUAGE, stopword_list

# A small English stopword list: overlap on "the" or "of" says nothing about relevance.
_STOPWORD_TEXT = """
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how i if in into is
it its itself just me more most my myself no nor not now of off on once only or other our
ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself
yourselves
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def span_stopwords(language: str = DEFAULT_LANGUAGE) -> frozenset[str]:
    """The words a span never starts on and that say nothing as overlap: :data:`STOPWORDS` for
    English (as before languages existed), the words of ``docid.words.stopword_list`` for
    another language (none where bm25s has no list for it)."""
    return STOPWORDS if language == DEFAULT_LANGUAGE else frozenset(stopword_list(language))


_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _terms(text: str, stopwords: Collection[str] = STOPWORDS) -> set[str]:
    """Lower-cased content words of ``text`` (punctuation stripped, stopwords dropped)."""
    return {w for w in _WORD.findall(text.lower()) if w not in stopwords}


def _norm(word: str) -> str:
    return "".join(_WORD.findall(word.lower()))


def _span(words: list[str], rng: random.Random, min_words: int, max_words: int) -> tuple[int, int]:
    """A random ``[start, end)`` of ``min_words..max_words`` words (shorter if the text is)."""
    length = min(len(words), rng.randint(min_words, max_words))
    start = rng.randrange(len(words) - length + 1)
    return start, start + length


def _check_lengths(min_words: int, max_words: int) -> None:
    if not 1 <= min_words <= max_words:
        raise ValueError(
            f"span lengths must satisfy 1 <= min_words <= max_words, got {min_words}..{max_words}"
        )


def query_spans(
    query: str,
    text: str,
    *,
    num_spans: int = 3,
    min_words: int = 3,
    max_words: int = 10,
    temperature: float = 1.0,
    rng: random.Random,
    stopwords: Collection[str] = STOPWORDS,
) -> list[str]:
    """Up to ``num_spans`` distinct word spans of ``text`` chosen by overlap with ``query``.

    Start positions on stopwords are never drawn; when no window overlaps the query the
    document's first span is the (single) target, as in SEAL.
    """
    _check_lengths(min_words, max_words)
    words = text.split()
    if not words or num_spans < 1:
        return []
    terms = _terms(query, stopwords)
    normed = [_norm(w) for w in words]
    starts, weights = [], []
    for i, word in enumerate(normed):
        if not word or word in stopwords:
            continue
        overlap = sum(1 for w in set(normed[i : i + 3]) if w in terms)
        if overlap:
            starts.append(i)
            weights.append(math.exp(overlap / temperature))
    if not starts:
        return [" ".join(words[: rng.randint(min_words, max_words)])]
    spans: list[str] = []
    # A few extra draws so duplicates (same start and length) still leave num_spans targets.
    for _ in range(4 * num_spans):
        start = rng.choices(starts, weights=weights)[0]
        span = " ".join(words[start : start + rng.randint(min_words, max_words)])
        if span not in spans:
            spans.append(span)
            if len(spans) == num_spans:
                break
    return spans


def supervised_pairs(
    examples: Iterable[tuple[str, str, str]], **options: Any
) -> list[tuple[str, str]]:
    """``(query, target)`` pairs from ``(query, title, text)`` of each relevant document.

    Targets are the title (if ``include_title`` and non-empty) and :func:`query_spans`.

    ``options`` are :func:`iter_supervised_pairs`'s keywords.
    """
    return list(iter_supervised_pairs(examples, **options))


def iter_supervised_pairs(
    examples: Iterable[tuple[str, str, str]],
    *,
    spans_per_query: int = 3,
    min_words: int = 3,
    max_words: int = 10,
    temperature: float = 1.0,
    include_title: bool = True,
    seed: int = 0,
    stopwords: Collection[str] = STOPWORDS,
) -> Iterator[tuple[str, str]]:
    """The pairs of :func:`supervised_pairs`, one at a time (the same pairs in the same order),
    so that a large set is written out without being held."""
    rng = random.Random(seed)
    for query, title, text in examples:
        query = query.strip()
        if include_title and title.strip():
            yield (query, " ".join(title.split()))
        for span in query_spans(
            query,
            text,
            num_spans=spans_per_query,
            min_words=min_words,
            max_words=max_words,
            temperature=temperature,
            rng=rng,
            stopwords=stopwords,
        ):
            yield (query, span)


def unsupervised_pairs(
    documents: Iterable[tuple[str, str]], **options: Any
) -> list[tuple[str, str]]:
    """``(source, target)`` pairs from ``(title, text)`` documents, no queries needed.

    Per document: ``pairs_per_doc`` pairs of a source span (``source_words`` words) -> a target
    span (``min_words..max_words``) that does not overlap it when the text is long enough,
    plus, if ``include_title``, title -> one random span.

    ``options`` are :func:`iter_unsupervised_pairs`'s keywords.
    """
    return list(iter_unsupervised_pairs(documents, **options))


def iter_unsupervised_pairs(
    documents: Iterable[tuple[str, str]],
    *,
    pairs_per_doc: int = 3,
    source_words: tuple[int, int] = (10, 30),
    min_words: int = 3,
    max_words: int = 10,
    include_title: bool = True,
    seed: int = 0,
) -> Iterator[tuple[str, str]]:
    """The pairs of :func:`unsupervised_pairs`, one at a time (the same pairs in the same
    order)."""
    _check_lengths(min_words, max_words)
    _check_lengths(*source_words)
    rng = random.Random(seed)
    for title, text in documents:
        words = text.split()
        if not words:
            continue
        title = " ".join(title.split())
        if include_title and title:
            a, b = _span(words, rng, min_words, max_words)
            yield (title, " ".join(words[a:b]))
        for _ in range(pairs_per_doc):
            s0, s1 = _span(words, rng, *source_words)
            for _attempt in range(8):
                t0, t1 = _span(words, rng, min_words, max_words)
                if t1 <= s0 or t0 >= s1:
                    break
            yield (" ".join(words[s0:s1]), " ".join(words[t0:t1]))


def salient_span_pairs(documents: Sequence[str], **options: Any) -> list[tuple[str, str]]:
    """``(noisy passage, salient span of it)`` pairs from document texts, no queries needed.

    The source is a window of ``source_words`` words of a document with ``word_dropout`` of its
    words left out, standing in for a query that paraphrases part of the document; the target is
    a span of ``min_words..max_words`` words inside the window, starting at a content word drawn
    with probability proportional to ``idf ** rarity`` (idf over ``documents``). Unlike
    :func:`unsupervised_pairs`, the target overlaps the source, so a model trained from scratch
    learns to *copy* the rare words of its input into corpus n-grams -- the behaviour that makes
    SEAL's frequency-corrected scoring work -- instead of only a corpus language model.

    ``options`` are :func:`iter_salient_span_pairs`'s keywords.
    """
    return list(iter_salient_span_pairs(documents, **options))


def iter_salient_span_pairs(
    documents: Sequence[str],
    *,
    pairs_per_doc: int = 4,
    source_words: tuple[int, int] = (8, 24),
    min_words: int = 1,
    max_words: int = 4,
    word_dropout: float = 0.25,
    rarity: float = 1.0,
    seed: int = 0,
    stopwords: Collection[str] = STOPWORDS,
) -> Iterator[tuple[str, str]]:
    """The pairs of :func:`salient_span_pairs`, one at a time (the same pairs in the same order):
    a first pass counts document frequencies, a second splits each document again, so that
    neither the corpus's words nor the pairs are held all at once."""
    _check_lengths(min_words, max_words)
    _check_lengths(*source_words)
    if not 0.0 <= word_dropout < 1.0:
        raise ValueError(f"word_dropout must be in [0, 1), got {word_dropout}")
    df: dict[str, int] = {}
    for text in documents:
        for w in {_norm(w) for w in text.split()}:
            df[w] = df.get(w, 0) + 1
    n = max(1, len(documents))
    rng = random.Random(seed)
    for text in documents:
        words = text.split()
        norms = [_norm(w) for w in words]
        starts = [i for i, w in enumerate(norms) if w and w not in stopwords]
        if not starts:
            continue
        # Cumulative weights once per document, not per draw: the same draws (choices adds
        # them up the same way), a fraction of the time at a million documents.
        cumulative = list(
            itertools.accumulate(math.log(1.0 + n / df[norms[i]]) ** rarity for i in starts)
        )
        for _ in range(pairs_per_doc):
            anchor = rng.choices(starts, cum_weights=cumulative)[0]
            length = rng.randint(min_words, max_words)
            end = min(len(words), anchor + length)
            width = rng.randint(*source_words)
            lo = max(0, min(anchor - rng.randint(0, width), len(words) - width))
            hi = max(end, min(len(words), lo + width))
            kept = [
                words[i] for i in range(lo, hi) if anchor <= i < end or rng.random() >= word_dropout
            ]
            yield (" ".join(kept), " ".join(words[anchor:end]))


# ---------------------------------------------------------------------------------- scoring


class NgramCounts(Protocol):
    """What :func:`seal_score` and :func:`bm25_score` need from an n-gram index
    (``trie.fmindex.NgramIndex``)."""

    @property
    def total_tokens(self) -> int: ...

    @property
    def doc_lengths(self) -> np.ndarray: ...

    def count(self, ngram: Sequence[int]) -> int: ...

    def occurrences(self, ngram: Sequence[int]) -> tuple[np.ndarray, np.ndarray]: ...

    def postings(self, ngram: Sequence[int]) -> tuple[np.ndarray, np.ndarray]: ...


def ngram_weight(logprob: float, count: int, total: int, smoothing: float = 0.0) -> float:
    """SEAL's frequency-corrected n-gram score, before the power ``alpha``.

    ``w = max(0, log[P(n|q) (1 - P(n)) / (P(n) (1 - P(n|q)))])`` with ``P(n|q) = exp(logprob)``
    and ``P(n) = (count + smoothing) / (total + smoothing)``: an n-gram scores when the model
    likes it more than its corpus frequency predicts.
    """
    if count <= 0 or total <= 0:
        return 0.0
    lp = min(float(logprob), -1e-10)  # P(n|q) must stay below 1 for the log-odds
    prior = (count + smoothing) / (total + smoothing)
    if prior >= 1.0:
        return 0.0
    value = lp + math.log1p(-prior) - math.log(prior) - math.log(-math.expm1(lp))
    return max(value, 0.0)


def seal_score(
    ngrams_with_logprobs: Iterable[tuple[Sequence[int], float]],
    index: NgramCounts,
    *,
    alpha: float = 2.0,
    beta: float = 0.8,
    smoothing: float = 5.0,
    max_occurrences: int = 1500,
    k: int | None = None,
) -> list[tuple[int, float]]:
    """Rank documents by SEAL's intersective score of the generated n-grams.

    ``ngrams_with_logprobs`` are token-id n-grams (no decoder start / EOS) with their log
    probability given the query (sum of token log-probs, i.e. no length normalisation).

    1. Each distinct n-gram (best log-prob kept) gets ``w(n)^alpha`` (:func:`ngram_weight`);
       n-grams absent from the corpus, with ``w = 0``, or occurring more than
       ``max_occurrences`` times (their ``w`` is negligible, and listing them is costly) drop out.
    2. N-grams are taken from best to worst. An occurrence counts for its document only if it
       overlaps no corpus position already claimed by a better n-gram (so of two overlapping
       n-grams, e.g. one inside the other, only the best-scored counts), and it then claims its
       positions. Each n-gram counts at most once per document.
    3. A document's score is the sum of its counted n-grams' scores, each multiplied by SEAL's
       coverage factor ``1 - beta + beta * |new tokens| / |tokens|``, where new tokens are the
       n-gram's token ids not in the better n-grams already counted for that document
       (``beta=0`` turns it off).

    Defaults are SEAL's (``alpha=2, beta=0.8, smoothing=5``); ``alpha=1, beta=0, smoothing=0``
    is the bare formula. Returns ``(doc_index, score)`` best first (ties: lower index first),
    only documents containing at least one scored n-gram, cut to ``k`` if given.
    """
    best = best_logprobs(ngrams_with_logprobs)
    total = int(index.total_tokens)
    scored = []
    for key, logprob in best.items():
        count = int(index.count(key))
        if count == 0 or count > max_occurrences:
            continue
        weight = ngram_weight(logprob, count, total, smoothing) ** alpha
        if weight > 0.0:
            scored.append((weight, key))
    # Best first; longer n-grams break ties, then the ids, so the order is deterministic.
    scored.sort(key=lambda item: (-item[0], -len(item[1]), item[1]))

    claimed: set[int] = set()
    found: dict[int, list[tuple[float, tuple[int, ...]]]] = {}
    for weight, key in scored:
        docs, positions = index.occurrences(key)
        length = len(key)
        counted: set[int] = set()
        for doc, pos in zip(docs.tolist(), positions.tolist(), strict=True):
            span = range(pos, pos + length)
            if any(p in claimed for p in span):
                continue
            claimed.update(span)
            if doc not in counted:
                counted.add(doc)
                found.setdefault(doc, []).append((weight, key))

    results = []
    for doc, items in found.items():
        seen: set[int] = set()
        total_score = 0.0
        for weight, key in items:  # already best first
            tokens = set(key)
            factor = 1.0 - beta + beta * len(tokens - seen) / len(tokens)
            total_score += weight * factor
            seen |= tokens
        results.append((doc, total_score))
    return best_first(results, k)


def bm25_score(
    ngrams_with_logprobs: Iterable[tuple[Sequence[int], float]],
    index: NgramCounts,
    *,
    gamma: float = 0.25,
    k1: float = 1.2,
    b: float = 0.75,
    max_occurrences: int = 1500,
    k: int | None = None,
) -> list[tuple[int, float]]:
    """Rank documents by BM25 over the generated n-grams, each weighted by its probability.

    Every distinct n-gram (best log-prob kept) is a query term of weight ``P(n|q) ** gamma``:

        score(d) = sum_n P(n|q)^gamma * idf(n) * tf(n, d) (k1 + 1) / (tf(n, d) + k1 (1 - b + b |d| / avgdl))

    with ``idf(n) = log(1 + (N - df + 0.5) / (df + 0.5))`` (Lucene's), ``tf`` the n-gram's
    occurrences in ``d`` and ``|d|`` its length in tokens. Unlike :func:`seal_score` this counts
    repeated occurrences (saturating) and normalises for document length, which is what ranks a
    small model's many short, partly redundant n-grams best (experiments/quality.py); a small
    ``gamma`` keeps the model's less likely n-grams as evidence. N-grams absent from the corpus
    or occurring more than ``max_occurrences`` times drop out. Returns ``(doc_index, score)`` best
    first (ties: lower index first), only documents with a positive score, cut to ``k`` if given.
    """
    docs, scores = bm25_scores(
        ngrams_with_logprobs,
        index,
        gamma=gamma,
        k1=k1,
        b=b,
        max_occurrences=max_occurrences,
    )
    order = np.lexsort((docs, -scores))  # best first, ties: lower index first
    if k is not None:
        order = order[:k]
    return list(zip(docs[order].tolist(), scores[order].tolist(), strict=True))


def bm25_scores(
    ngrams_with_logprobs: Iterable[tuple[Sequence[int], float]],
    index: NgramCounts,
    *,
    gamma: float = 0.25,
    k1: float = 1.2,
    b: float = 0.75,
    max_occurrences: int = 1500,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bm25_score`'s documents (ascending) and their scores, as arrays: only documents
    with a positive score, unsorted by score."""
    best = best_logprobs(ngrams_with_logprobs)
    lengths = index.doc_lengths
    num_docs = len(lengths)
    # Only the documents an n-gram occurs in are touched: no pass over the whole corpus.
    average_length = max(int(index.total_tokens) / max(num_docs, 1), 1e-9)
    hit_docs, hit_gains = [], []
    for key, logprob in best.items():
        count = int(index.count(key))
        if count == 0 or count > max_occurrences:
            continue
        docs, tf = index.postings(key)
        idf = math.log1p((num_docs - len(docs) + 0.5) / (len(docs) + 0.5))
        weight = math.exp(gamma * min(logprob, 0.0)) * idf
        length_norm = k1 * (1.0 - b + b * lengths[docs] / average_length)
        hit_docs.append(docs)
        hit_gains.append(weight * tf * (k1 + 1.0) / (tf + length_norm))
    if not hit_docs:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    # Summed per document in the order of the n-grams, as a running sum would (bincount adds
    # its weights in input order), so the scores are those of a loop over the documents.
    docs, where = np.unique(np.concatenate(hit_docs), return_inverse=True)
    scores = np.bincount(where, weights=np.concatenate(hit_gains), minlength=len(docs))
    keep = scores > 0.0
    return docs[keep], scores[keep]


def best_logprobs(
    ngrams_with_logprobs: Iterable[tuple[Sequence[int], float]],
) -> dict[tuple[int, ...], float]:
    """Each distinct non-empty n-gram with its best log-prob (beams may repeat an n-gram)."""
    best: dict[tuple[int, ...], float] = {}
    for ngram, logprob in ngrams_with_logprobs:
        key = tuple(int(t) for t in ngram)
        if key and (key not in best or logprob > best[key]):
            best[key] = float(logprob)
    return best


def best_first(results: list[tuple[int, float]], k: int | None) -> list[tuple[int, float]]:
    """Sorted by score, ties by lower document index, cut to ``k``."""
    results.sort(key=lambda item: (-item[1], item[0]))
    return results if k is None else results[:k]
