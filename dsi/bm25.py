"""BM25 baseline on ``bm25s``: stopwords and Snowball stemming of a language (English by
default; ``docid.words``), title + text."""

from __future__ import annotations

import logging

import bm25s
import numpy as np

from docid.words import DEFAULT_LANGUAGE, stemmer, stopwords
from dsi.data import Corpus

# bm25s sets its own logger to DEBUG on import, which floods every command's output.
logging.getLogger("bm25s").setLevel(logging.WARNING)


class BM25Retriever:
    """Lexical retriever; ``index`` a :class:`Corpus`, then ``search`` plain-text queries."""

    def __init__(
        self,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        language: str = DEFAULT_LANGUAGE,
    ) -> None:
        self.k1, self.b, self.method, self.language = k1, b, method, language
        self._stemmer = stemmer(language)
        self._stopwords = stopwords(language)
        self._model: bm25s.BM25 | None = None
        self._corpus: Corpus | None = None
        self.doc_ids: list[str] = []

    @property
    def num_docs(self) -> int:
        return len(self.doc_ids)

    def _tokenize(self, texts: list[str], return_ids: bool) -> object:
        return bm25s.tokenize(
            texts,
            stopwords=self._stopwords,
            stemmer=self._stemmer,
            return_ids=return_ids,
            show_progress=False,
        )

    def index(self, corpus: Corpus) -> BM25Retriever:
        """Build the index over ``title + " " + text`` of every document; returns ``self``."""
        if len(corpus) == 0:
            raise ValueError("cannot build a BM25 index over an empty corpus")
        model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        model.index(self._tokenize(corpus.full_texts(), return_ids=True), show_progress=False)
        self._model, self._corpus, self.doc_ids = model, corpus, list(corpus.doc_ids)
        return self

    def _indexed(self) -> bm25s.BM25:
        if self._model is None:
            raise RuntimeError("BM25Retriever used before index")
        return self._model

    def query_tokens(self, queries: list[str]) -> list[list[str]]:
        """Each query's stemmed, stopped terms that occur in the corpus (maybe none)."""
        vocab = self._indexed().vocab_dict
        return [
            [t for t in query if t and t in vocab]
            for query in self._tokenize(list(queries), return_ids=False)
        ]

    def document_tokens(self, position: int) -> list[str]:
        """The stemmed, stopped terms of the document at ``position``, as it was indexed."""
        self._indexed()
        assert self._corpus is not None
        title, text = self._corpus.titles[position], self._corpus.texts[position]
        return [t for t in self._tokenize([f"{title} {text}" if title else text], False)[0] if t]

    def scores(self, tokens: list[str]) -> np.ndarray:
        """The BM25 score of every document (in corpus order) for terms of ``query_tokens``."""
        return np.asarray(self._indexed().get_scores(tokens), dtype=np.float64)

    def search(self, queries: list[str], k: int = 10) -> list[list[tuple[str, float]]]:
        """Top ``k`` ``(doc_id, score)`` per query, best first.

        Only documents sharing a term with the query are returned, so a query whose terms are
        all stopwords or unseen gets an empty list.
        """
        if self._model is None:
            raise RuntimeError("BM25Retriever.search called before index")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        tokens = self.query_tokens(list(queries))
        results: list[list[tuple[str, float]]] = [[] for _ in tokens]
        live = [i for i, query in enumerate(tokens) if query]
        if not live:
            return results
        docs, scores = self._model.retrieve(
            [tokens[i] for i in live], k=min(k, self.num_docs), show_progress=False
        )
        for row, i in enumerate(live):
            results[i] = [
                (self.doc_ids[int(d)], float(s))
                for d, s in zip(docs[row], scores[row], strict=True)
                if s > 0
            ]
        return results
