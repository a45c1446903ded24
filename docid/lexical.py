"""Lexical docids, made of words a model can read in the document: its title or its keywords.

- ``title`` (GENRE): the case-folded words of the document's title (at most ``max_words``).
  ``fit`` and ``add`` take the *titles* as their texts (``TitleDocidMap.reads``); a corpus
  without any title is refused, and a document without one gets the placeholder ``<untitled>``.
- ``keywords`` (the lexical docids of SE-DSI / TSGen / PAG): the document's ``max_words`` words
  of highest BM25 weight in it (idf times saturated term frequency, stopwords left out), most
  distinctive first, ties in alphabetical order.

Either way a docid that an earlier document already has gets a suffix symbol ``#2``, ``#3``, ...
(the first free one, in corpus order), so docids are unique and a rebuild gives the same ones.
Symbols are words; suffixes and placeholders are never words (words are ``\\w+`` runs).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from docid.base import Docid, DocidError, DocidMap, check_corpus, register_scheme
from docid.io import atomic_write_text

_WORD = re.compile(r"\w+")
UNTITLED = "<untitled>"
NO_WORDS = "<no-words>"
# BM25's usual constants, as dsi.bm25 uses them.
K1, B = 1.2, 0.75
KEYWORD_STATS_FILE = "keyword_stats.json"


def words_of(text: str) -> list[str]:
    """The case-folded ``\\w+`` words of ``text``, in order."""
    return _WORD.findall(text.casefold())


def is_word(symbol: str) -> bool:
    """Whether a docid symbol is a word (suffixes and placeholders are not)."""
    return _WORD.fullmatch(symbol) is not None


def suffix_symbol(n: int) -> str:
    """The symbol appended to the ``n``-th document (n >= 2) with the same words."""
    return f"#{n}"


def without_words(text: str, words: Iterable[str]) -> str:
    """``text`` with every whole-word occurrence of ``words`` removed (case-folded match)."""
    drop = set(words)
    kept = _WORD.sub(lambda m: "" if m.group().casefold() in drop else m.group(), text)
    return " ".join(kept.split())


class LexicalDocidMap(DocidMap):
    """A scheme whose docids are words (plus a suffix symbol where two documents share them)."""

    scheme: ClassVar[str] = ""
    default_words: ClassVar[int] = 4

    def docid_words(self, doc_id: str) -> list[str]:
        """The words of ``doc_id``'s docid: its symbols without suffixes and placeholders."""
        return [s for s in self.symbol_names(doc_id) if is_word(s)]

    @property
    def max_words(self) -> int:
        return int(self.options.get("max_words", self.default_words))

    @classmethod
    def _max_words(cls, options: dict[str, Any]) -> int:
        unknown = sorted(set(options) - {"max_words"})
        if unknown:
            raise DocidError(f"the {cls.scheme} scheme takes only 'max_words', got {unknown}.")
        value = options.get("max_words", cls.default_words)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DocidError(f"max_words must be a positive integer, got {value!r}.")
        return value

    def _words_for(self, texts: list[str]) -> list[list[str]]:
        """The words (before any suffix) of new documents with ``texts``; must not mutate."""
        raise NotImplementedError

    def _plan_add(
        self, doc_ids: list[str], texts: list[str] | None, **options: Any
    ) -> tuple[list[str], list[Docid]]:
        if options:
            raise DocidError(
                f"the {self.scheme} scheme takes no add options, got {sorted(options)}."
            )
        if texts is None:
            raise DocidError(f"the {self.scheme} scheme needs the documents' texts to add them.")
        symbols = list(self.symbols)
        seqs = _assign(self._words_for(texts), symbols, set(self.sequences))
        return symbols, seqs


def _assign(base: Sequence[Sequence[str]], symbols: list[str], taken: set[Docid]) -> list[Docid]:
    """Docids of the word lists ``base``, unique among themselves and ``taken``: a repeated one
    gets the first free suffix ``#2``, ``#3``, ... New symbols are appended to ``symbols``."""
    index = {s: i for i, s in enumerate(symbols)}

    def code(names: Iterable[str]) -> Docid:
        out = []
        for name in names:
            if name not in index:
                index[name] = len(symbols)
                symbols.append(name)
            out.append(index[name])
        return tuple(out)

    taken = set(taken)
    seqs: list[Docid] = []
    for words in base:
        seq = code(words)
        n = 2
        while seq in taken:
            seq = code([*words, suffix_symbol(n)])
            n += 1
        taken.add(seq)
        seqs.append(seq)
    return seqs


def title_words(titles: Sequence[str], max_words: int) -> list[list[str]]:
    """The first ``max_words`` words of each title; ``<untitled>`` for a title without words."""
    return [words_of(t)[:max_words] or [UNTITLED] for t in titles]


@register_scheme
class TitleDocidMap(LexicalDocidMap):
    """A document's docid is the words of its title (GENRE), made unique by a suffix."""

    scheme = "title"
    reads = "title"
    default_words = 16

    @classmethod
    def fit(
        cls, doc_ids: Sequence[str], texts: Sequence[str] | None = None, **options: Any
    ) -> TitleDocidMap:
        """``texts`` are the documents' titles; at least one must have a word."""
        max_words = cls._max_words(options)
        doc_ids = list(doc_ids)
        titles = check_corpus(doc_ids, texts)
        if titles is None or not any(words_of(t) for t in titles):
            raise DocidError(
                "title docids need document titles, and this corpus has none; choose another "
                "docid kind (e.g. keywords)."
            )
        symbols: list[str] = []
        seqs = _assign(title_words(titles, max_words), symbols, set())
        return cls(doc_ids, seqs, symbols, {"max_words": max_words})

    def _words_for(self, texts: list[str]) -> list[list[str]]:
        return title_words(texts, self.max_words)


@dataclass
class KeywordStats:
    """What BM25 weights need of a corpus: its size, total length and document frequencies."""

    num_docs: int = 0
    total_length: int = 0
    document_frequency: Counter[str] = field(default_factory=Counter)

    def keywords(
        self, texts: Sequence[str], max_words: int
    ) -> tuple[list[list[str]], KeywordStats]:
        """The ``max_words`` words of highest BM25 weight of each text, most distinctive first
        (ties alphabetical), weighed against these statistics with ``texts`` counted in; and
        those statistics (``self`` is left as it is)."""
        stopwords = _stopwords()
        docs = [[w for w in words_of(t) if w not in stopwords and len(w) > 1] for t in texts]
        stats = KeywordStats(
            self.num_docs + len(docs),
            self.total_length + sum(len(d) for d in docs),
            Counter(self.document_frequency),
        )
        for doc in docs:
            stats.document_frequency.update(set(doc))
        average = max(stats.total_length / max(stats.num_docs, 1), 1e-9)
        out = []
        for doc in docs:
            counts = Counter(doc)
            norm = K1 * (1.0 - B + B * len(doc) / average)
            weights = {w: stats.weight(w, tf, norm) for w, tf in counts.items()}
            ranked = sorted(weights, key=lambda w: (-weights[w], w))
            out.append(ranked[:max_words] or [NO_WORDS])
        return out, stats

    def weight(self, word: str, tf: int, norm: float) -> float:
        """BM25's term weight (Lucene's idf) of ``word`` occurring ``tf`` times."""
        df = self.document_frequency[word]
        idf = math.log1p((self.num_docs - df + 0.5) / (df + 0.5))
        return idf * tf * (K1 + 1.0) / (tf + norm)


@register_scheme
class KeywordsDocidMap(LexicalDocidMap):
    """A document's docid is its ``max_words`` words of highest BM25 weight, made unique by a
    suffix. The corpus statistics are kept in ``keyword_stats.json`` so that added documents
    are weighed against the whole index (old docids never change)."""

    scheme = "keywords"
    default_words = 4

    def _set(self, *args: Any) -> None:
        super()._set(*args)
        self.stats = KeywordStats()
        self._planned: KeywordStats | None = None

    @classmethod
    def fit(
        cls, doc_ids: Sequence[str], texts: Sequence[str] | None = None, **options: Any
    ) -> KeywordsDocidMap:
        """``texts`` are the documents' full texts."""
        max_words = cls._max_words(options)
        doc_ids = list(doc_ids)
        texts = check_corpus(doc_ids, texts)
        if texts is None:
            raise DocidError("keyword docids need the documents' texts.")
        words, stats = KeywordStats().keywords(texts, max_words)
        symbols: list[str] = []
        seqs = _assign(words, symbols, set())
        made = cls(doc_ids, seqs, symbols, {"max_words": max_words})
        made.stats = stats
        return made

    def _words_for(self, texts: list[str]) -> list[list[str]]:
        words, self._planned = self.stats.keywords(texts, self.max_words)
        return words

    def add(
        self, doc_ids: Sequence[str], texts: Sequence[str] | None = None, **options: Any
    ) -> list[Docid]:
        """As :meth:`DocidMap.add`; the statistics take the new documents in once it succeeds."""
        self._planned = None
        seqs = super().add(doc_ids, texts, **options)
        if self._planned is not None:
            self.stats, self._planned = self._planned, None
        return seqs

    def _save_extra(self, directory: Path) -> list[str]:
        stats = {
            "num_docs": self.stats.num_docs,
            "total_length": self.stats.total_length,
            "document_frequency": dict(sorted(self.stats.document_frequency.items())),
        }
        atomic_write_text(directory / KEYWORD_STATS_FILE, json.dumps(stats, ensure_ascii=False))
        return [KEYWORD_STATS_FILE]

    def _load_extra(self, directory: Path) -> None:
        path = Path(directory) / KEYWORD_STATS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.stats = KeywordStats(
                int(data["num_docs"]),
                int(data["total_length"]),
                Counter({str(w): int(n) for w, n in data["document_frequency"].items()}),
            )
        except FileNotFoundError:
            raise DocidError(f"{path} does not exist.") from None
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise DocidError(f"{path} is not a keyword statistics file ({err}).") from None
        if self.stats.num_docs != len(self):
            raise DocidError(
                f"{path} counts {self.stats.num_docs} documents but the map holds {len(self)}."
            )


def _stopwords() -> frozenset[str]:
    """English stopwords, the list BM25 (``docid.words``, ``dsi.bm25``) leaves out."""
    import bm25s.stopwords

    return frozenset(bm25s.stopwords.STOPWORDS_EN)
