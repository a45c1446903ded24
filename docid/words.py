"""Stemmed words of a corpus, to score documents by the words of generated n-grams.

The n-grams a model generates match documents piece for piece in the corpus token stream
(``trie.fmindex.NgramIndex``): "tumours" generated does not match "tumour". A
:class:`WordIndex` lists each document's stemmed words so that the words of the generated
n-grams can also be matched as words (BM25, ``docid.ngram.SealOptions``-style weights), as
a lexical retriever would match them. Words are lower-cased, English stopwords are dropped and
the rest are Snowball-stemmed, the same analysis as ``dsi.bm25``.

Files written by :meth:`WordIndex.save`: ``word_index.json`` (format, version, sizes,
vocabulary) and ``postings.npz`` (the postings, one block of documents per word).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from docid.io import atomic_open, atomic_write_text

FORMAT = "dsi-word-index"
VERSION = 1
HEADER = "word_index.json"
POSTINGS = "postings.npz"


@functools.lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def analyze(texts: Sequence[str], return_ids: bool = False):
    """The stemmed content words of each text (``bm25s.tokenize``: lower-cased, English
    stopwords dropped, Snowball stems); with ``return_ids`` bm25s' ``Tokenized`` (ids, vocab)."""
    import bm25s

    return bm25s.tokenize(
        list(texts),
        stopwords="en",
        stemmer=_stemmer(),
        return_ids=return_ids,
        show_progress=False,
    )


@dataclass
class WordIndex:
    """Postings of stemmed words: the documents holding word ``w`` are
    ``docs[offsets[w]:offsets[w + 1]]``, with their counts in ``counts``."""

    vocabulary: dict[str, int]
    offsets: np.ndarray  # int64, one more than the vocabulary
    docs: np.ndarray  # int32, ascending within each word
    counts: np.ndarray  # int32
    doc_lengths: np.ndarray  # int32: content words per document

    @property
    def num_docs(self) -> int:
        return len(self.doc_lengths)

    @classmethod
    def build(cls, texts: Sequence[str]) -> WordIndex:
        """Index the stemmed words of ``texts`` (document ``i`` is ``texts[i]``)."""
        tokenized = analyze(texts, return_ids=True)
        lengths = np.array([len(ids) for ids in tokenized.ids], dtype=np.int32)
        words = np.fromiter(
            (w for ids in tokenized.ids for w in ids), dtype=np.int64, count=int(lengths.sum())
        )
        owners = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        # One key per (word, document): sorting groups each word's documents in order.
        keys, counts = np.unique(words * max(len(lengths), 1) + owners, return_counts=True)
        size = len(tokenized.vocab)
        by_word = keys // max(len(lengths), 1)
        offsets = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(np.bincount(by_word, minlength=size), out=offsets[1:])
        return cls(
            dict(tokenized.vocab),
            offsets,
            (keys % max(len(lengths), 1)).astype(np.int32),
            counts.astype(np.int32),
            lengths,
        )

    def bm25(self, words: Iterable[str], k1: float = 1.2, b: float = 0.75) -> np.ndarray:
        """BM25 score of every document for a query of ``words`` (analysed words; each counted
        once, unknown ones ignored), with Lucene's ``idf``; zeros where none occurs."""
        return self.weighted_bm25(dict.fromkeys(words, 1.0), k1, b)

    def weighted_bm25(
        self, weights: Mapping[str, float], k1: float = 1.2, b: float = 0.75
    ) -> np.ndarray:
        """Like :meth:`bm25`, each word's term scaled by its weight in ``weights``."""
        scores = np.zeros(self.num_docs)
        known = sorted(
            (self.vocabulary[w], weight) for w, weight in weights.items() if w in self.vocabulary
        )
        if not known:
            return scores
        average = max(float(self.doc_lengths.mean()), 1e-9)
        for word, weight in known:
            start, end = self.offsets[word], self.offsets[word + 1]
            docs, tf = self.docs[start:end], self.counts[start:end]
            idf = math.log1p((self.num_docs - len(docs) + 0.5) / (len(docs) + 0.5))
            norm = k1 * (1.0 - b + b * self.doc_lengths[docs] / average)
            scores[docs] += weight * idf * tf * (k1 + 1.0) / (tf + norm)
        return scores

    def save(self, directory: Path) -> None:
        """Write the index into ``directory`` (each file through a temporary one and a rename)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        vocabulary = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        header = {
            "format": FORMAT,
            "version": VERSION,
            "num_docs": self.num_docs,
            "num_postings": len(self.docs),
            "vocabulary": vocabulary,
        }
        arrays = {
            "offsets": self.offsets,
            "docs": self.docs,
            "counts": self.counts,
            "doc_lengths": self.doc_lengths,
        }
        with atomic_open(directory / POSTINGS) as handle:
            np.savez(handle, **arrays)
        atomic_write_text(directory / HEADER, json.dumps(header, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path) -> WordIndex:
        """Read an index written by :meth:`save`; raises ``ValueError`` if it is malformed."""
        directory = Path(directory)
        try:
            header = json.loads((directory / HEADER).read_text(encoding="utf-8"))
            with np.load(directory / POSTINGS, allow_pickle=False) as arrays:
                made = cls(
                    {w: i for i, w in enumerate(header["vocabulary"])},
                    arrays["offsets"],
                    arrays["docs"],
                    arrays["counts"],
                    arrays["doc_lengths"],
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"word index {directory} cannot be read: {exc}") from exc
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise ValueError(
                f"word index {directory} is {header.get('format')!r} version "
                f"{header.get('version')!r}; this dsi reads {FORMAT!r} version {VERSION}."
            )
        sizes_agree = (
            len(made.offsets) == len(made.vocabulary) + 1
            and len(made.docs) == len(made.counts) == header["num_postings"] == made.offsets[-1]
            and made.num_docs == header["num_docs"]
        )
        if not sizes_agree:
            raise ValueError(f"word index {directory} is inconsistent: its array sizes disagree.")
        return made
