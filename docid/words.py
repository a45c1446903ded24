"""Stemmed words of a corpus, to score documents by the words of generated n-grams.

The n-grams a model generates match documents piece for piece in the corpus token stream
(``trie.fmindex.NgramIndex``): "tumours" generated does not match "tumour". A
:class:`WordIndex` lists each document's stemmed words so that the words of the generated
n-grams can also be matched as words (BM25, ``docid.ngram.SealOptions``-style weights), as
a lexical retriever would match them. Words are lower-cased, the stopwords of the index's
language are dropped (English by default; :func:`stopwords`) and the rest are Snowball-stemmed
in that language, the same analysis as ``dsi.bm25``.

Files written by :meth:`WordIndex.save`: ``word_index.json`` (format, version, sizes,
vocabulary) and ``postings.npz`` (the postings, one block of documents per word).
"""

from __future__ import annotations

import functools
import json
import math
import struct
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from docid.io import atomic_open, atomic_write_text

FORMAT = "dsi-word-index"
VERSION = 1
HEADER = "word_index.json"
POSTINGS = "postings.npz"


DEFAULT_LANGUAGE = "english"
# The stopword lists of bm25s (NLTK's), by the Snowball name of their language; English is
# bm25s' "en", as before languages existed. Other Snowball languages are stemmed, no words dropped.
_BM25S_STOPWORDS = {
    "english": "en",
    "danish": "da",
    "dutch": "nl",
    "french": "fr",
    "german": "de",
    "italian": "it",
    "norwegian": "no",
    "portuguese": "pt",
    "russian": "ru",
    "spanish": "es",
    "swedish": "sv",
    "turkish": "tr",
}
# Snowball algorithms that are not a language of their own (variants of english and dutch).
_NOT_LANGUAGES = frozenset({"porter", "dutch_porter"})


@functools.lru_cache(maxsize=1)
def languages() -> tuple[str, ...]:
    """The languages the lexical parts can analyse: Snowball's (PyStemmer's algorithms)."""
    import Stemmer

    return tuple(sorted(set(Stemmer.algorithms()) - _NOT_LANGUAGES))


def check_language(language: str) -> str:
    """``language`` if Snowball stems it; otherwise ``ValueError`` listing the known ones."""
    if language not in languages():
        raise ValueError(
            f"Unknown language {language!r}; the known ones (Snowball's) are "
            f"{', '.join(languages())}."
        )
    return language


@functools.cache
def stemmer(language: str = DEFAULT_LANGUAGE):
    """The Snowball stemmer of ``language`` (PyStemmer), one per language."""
    import Stemmer

    return Stemmer.Stemmer(check_language(language))


def stopwords(language: str = DEFAULT_LANGUAGE) -> str | list[str]:
    """What ``bm25s.tokenize`` drops for ``language``: the name of bm25s' list for the twelve
    languages it has one for, none (an empty list) for the other Snowball languages."""
    return _BM25S_STOPWORDS.get(check_language(language), [])


def stopword_list(language: str = DEFAULT_LANGUAGE) -> list[str]:
    """The words of :func:`stopwords` for ``language`` (bm25s' list, NLTK's words)."""
    import bm25s.stopwords

    name = stopwords(language)
    if not name:
        return []
    table = "EN" if language == DEFAULT_LANGUAGE else language.upper()
    return list(getattr(bm25s.stopwords, f"STOPWORDS_{table}"))


def ready_analyzer(language: str = DEFAULT_LANGUAGE) -> None:
    """Import and build what :func:`analyze` uses for ``language`` (bm25s, the stemmer), so that
    a searching process pays for it when it loads an index, not on its first query (~16 ms)."""
    import bm25s  # noqa: F401

    stemmer(language)


def analyze(texts: Sequence[str], return_ids: bool = False, language: str = DEFAULT_LANGUAGE):
    """The stemmed content words of each text (``bm25s.tokenize``: lower-cased, the
    ``language``'s stopwords dropped, its Snowball stems); with ``return_ids`` bm25s'
    ``Tokenized`` (ids, vocab)."""
    import bm25s

    return bm25s.tokenize(
        list(texts),
        stopwords=stopwords(language),
        stemmer=stemmer(language),
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
    language: str = DEFAULT_LANGUAGE  # of the analysis (stemmer, stopwords) of the words
    # Whether each document's words include those of the training queries that judge it
    # (``dsi.data.expanded_corpus``), as the n-gram kinds' with-queries preset scores.
    expanded: bool = False

    @property
    def num_docs(self) -> int:
        return len(self.doc_lengths)

    @functools.cached_property
    def _average_length(self) -> float:
        # Once per index, not per query: a mapped index would read every length each time.
        return max(float(self.doc_lengths.mean()), 1e-9)

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        language: str = DEFAULT_LANGUAGE,
        chunk: int = 50_000,
        expanded: bool = False,
    ) -> WordIndex:
        """Index the stemmed words of ``texts`` (document ``i`` is ``texts[i]``), analysed in
        ``language``, ``chunk`` documents at a time: a million passages then hold ~12 bytes per
        (word, document) pair besides the result, not Python lists of every word.

        Word ids are given in order of first sight (``bm25s.tokenize``'s own are in set order,
        which differs between processes: nothing depends on them but the files)."""
        vocabulary: dict[str, int] = {}
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # words, docs, counts
        lengths_parts: list[np.ndarray] = []
        for begin in range(0, len(texts), chunk):
            part = texts[begin : begin + chunk]
            tokenized = analyze(part, return_ids=True, language=language)
            # The chunk's word ids -> the index's.
            local = np.empty(len(tokenized.vocab), dtype=np.int64)
            for word, i in tokenized.vocab.items():
                local[i] = vocabulary.setdefault(word, len(vocabulary))
            lengths = np.fromiter(map(len, tokenized.ids), dtype=np.int32, count=len(part))
            words = local[
                np.fromiter(
                    (w for ids in tokenized.ids for w in ids),
                    dtype=np.int64,
                    count=int(lengths.sum()),
                )
            ]
            del tokenized
            owners = np.repeat(np.arange(len(part), dtype=np.int64), lengths)
            # One key per (word, document): sorting groups each word's documents in order.
            keys, counts = np.unique(words * len(part) + owners, return_counts=True)
            del words, owners
            parts.append(
                (
                    (keys // len(part)).astype(np.int32),
                    (keys % len(part) + begin).astype(np.int32),
                    counts.astype(np.int32),
                )
            )
            lengths_parts.append(lengths)
        size = len(vocabulary)
        per_word = [np.bincount(words, minlength=size) for words, _, _ in parts]
        offsets = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(np.sum(per_word, axis=0) if per_word else np.zeros(size, int), out=offsets[1:])
        docs = np.empty(int(offsets[-1]), dtype=np.int32)
        counts = np.empty(int(offsets[-1]), dtype=np.int32)
        # Each word's documents: those of the earlier chunks first (documents ascend).
        before = offsets[:-1].copy()
        for (words, part_docs, part_counts), sizes in zip(parts, per_word, strict=True):
            starts = np.zeros(size, dtype=np.int64)
            np.cumsum(sizes[:-1], out=starts[1:])
            where = before[words] + np.arange(len(words), dtype=np.int64) - starts[words]
            docs[where] = part_docs
            counts[where] = part_counts
            before += sizes
        parts.clear()
        lengths = np.concatenate(lengths_parts) if lengths_parts else np.zeros(0, dtype=np.int32)
        return cls(vocabulary, offsets, docs, counts, lengths, language, expanded)

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
        average = self._average_length
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
        if self.language != DEFAULT_LANGUAGE:  # English indexes keep the bytes they had
            header["language"] = self.language
        if self.expanded:  # likewise, indexes of documents alone
            header["expanded"] = True
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
    def load(cls, directory: Path, mmap: bool = False) -> WordIndex:
        """Read an index written by :meth:`save` (``mmap``: its postings mapped, not read);
        raises ``ValueError`` if it is malformed."""
        directory = Path(directory)
        try:
            header = json.loads((directory / HEADER).read_text(encoding="utf-8"))
            if mmap:
                arrays = _mapped_npz(directory / POSTINGS)
            else:
                with np.load(directory / POSTINGS, allow_pickle=False) as loaded:
                    arrays = {name: loaded[name] for name in loaded.files}
            made = cls(
                {w: i for i, w in enumerate(header["vocabulary"])},
                arrays["offsets"],
                arrays["docs"],
                arrays["counts"],
                arrays["doc_lengths"],
                header.get("language", DEFAULT_LANGUAGE),
                bool(header.get("expanded", False)),
            )
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
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


def _mapped_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed ``.npz`` (``np.savez``) mapped read-only where they lie in
    the archive, so that a search reads only the pages of the words it scores."""
    arrays = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise ValueError(f"{path} member {info.filename} is not a stored .npy array")
            # The local file header: 30 bytes, then the name and an extra field.
            handle.seek(info.header_offset)
            local = handle.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise ValueError(f"{path} member {info.filename} has no local header")
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            handle.seek(info.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            if dtype.hasobject:
                raise ValueError(f"{path} member {info.filename} holds Python objects")
            offset = handle.tell()
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if offset + size > info.header_offset + 30 + name_length + extra_length + (
                info.file_size
            ):
                raise ValueError(f"{path} member {info.filename} is shorter than its header says")
            name = info.filename[: -len(".npy")]
            if size == 0:
                arrays[name] = np.zeros(shape, dtype=dtype)
            else:
                mapped = np.memmap(
                    path,
                    dtype=dtype,
                    mode="r",
                    offset=offset,
                    shape=tuple(shape),
                    order="F" if fortran else "C",
                )
                # A plain array over the map (which it keeps open), as np.load(mmap_mode) gives.
                arrays[name] = mapped.view(np.ndarray)
    return arrays
