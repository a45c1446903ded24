"""Feedback stage of n-gram retrieval: generative pseudo-relevance feedback, optional.

The model reads each of the ``feedback_docs`` best documents of a first ranking in windows, as
it read documents in training; the ``feedback_words`` words it generates most often there score
documents too (BM25 weighted by their share), scaled so that the best of them scores
``feedback_weight`` times the first ranking's best. Like a reranker of pyserini it takes
rankings and returns rankings; what the model generates for a text comes from the retriever
(``read``). The settings are read from an object with :class:`dsi.seal.SealOptions`' names.

What the model generates reading each document is read once, at index time
(:func:`read_documents`, kept as :class:`FeedbackWords` in the index's ``feedback/`` folder),
so that a search pays only for its query: reading 5 documents at search time costs about a
second in a fresh process. Documents the table lacks (an index saved without it, another beam
count) are read at search time and cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from docid.io import atomic_open, atomic_write_text
from docid.words import WordIndex
from dsi.data import Corpus
from dsi.scoring import Ranking

log = logging.getLogger(__name__)

# Feedback reads documents in windows as long as the longest the model was trained to copy from
# (docid.ngram.salient_span_pairs' source_words).
FEEDBACK_WINDOW_WORDS = 24

# What the retriever's model generates reading texts: (texts, batch size, beams) -> the
# analysed words generated for each text.
Reader = Callable[[list[str], int, int], list[list[str]]]

FEEDBACK_DIR = "feedback"
_FORMAT = "dsi-feedback-words"
_VERSION = 1
_HEADER = "feedback.json"
_ARRAYS = ("offsets", "words", "counts")
# Beside a kept table (read_documents' ``keep``): the model that read it, and how far.
_CHECKPOINT = "checkpoint.json"
# How often a long read keeps what it has read (a million passages take hours on a CPU).
KEEP_SECONDS = 600.0


@dataclass
class FeedbackWords:
    """What the model generated reading every document, read once: for document ``d`` the
    words ``vocabulary[words[offsets[d]:offsets[d + 1]]]``, each with the number of windows
    it was generated in (``counts``), at ``beams`` beams. Saved as ``feedback/feedback.json``
    (format, beams, vocabulary) and plain ``.npy`` arrays, which :meth:`load` maps."""

    beams: int
    vocabulary: list[str]
    offsets: np.ndarray  # int64, one more than the documents
    words: np.ndarray  # int32 ids into vocabulary
    counts: np.ndarray  # int32 windows per (document, word)

    @property
    def num_docs(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_counts(cls, beams: int, counted: Iterable[Mapping[str, int]]) -> FeedbackWords:
        """The table of per-document word counts, in document order."""
        vocabulary: dict[str, int] = {}
        offsets, words, counts = [0], [], []
        for document in counted:
            for word, n in document.items():
                words.append(vocabulary.setdefault(word, len(vocabulary)))
                counts.append(n)
            offsets.append(len(words))
        return cls(
            beams,
            list(vocabulary),
            np.asarray(offsets, dtype=np.int64),
            np.asarray(words, dtype=np.int32),
            np.asarray(counts, dtype=np.int32),
        )

    def counts_of(self, doc: int) -> dict[str, int]:
        """The words generated reading document ``doc``, with their window counts."""
        start, end = int(self.offsets[doc]), int(self.offsets[doc + 1])
        vocabulary = self.vocabulary
        return {
            vocabulary[w]: n
            for w, n in zip(
                self.words[start:end].tolist(), self.counts[start:end].tolist(), strict=True
            )
        }

    def extended(self, more: FeedbackWords) -> FeedbackWords:
        """This table followed by ``more``'s documents (an addition's); arrays are joined, not
        read document by document."""
        if more.beams != self.beams:
            raise ValueError(f"feedback words at {more.beams} beams cannot follow {self.beams}")
        vocabulary = list(self.vocabulary)
        ids = {word: i for i, word in enumerate(vocabulary)}
        for word in more.vocabulary:
            if word not in ids:
                ids[word] = len(vocabulary)
                vocabulary.append(word)
        remap = np.array([ids[word] for word in more.vocabulary], dtype=np.int32)
        return FeedbackWords(
            self.beams,
            vocabulary,
            np.concatenate([self.offsets, more.offsets[1:] + self.offsets[-1]]),
            np.concatenate([self.words, remap[more.words]]).astype(np.int32),
            np.concatenate([self.counts, more.counts]).astype(np.int32),
        )

    def save(self, directory: Path) -> None:
        """Write the table into ``directory``, each file atomically, the header last."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            with atomic_open(directory / f"{name}.npy") as handle:
                np.save(handle, np.ascontiguousarray(getattr(self, name)), allow_pickle=False)
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "beams": self.beams,
            "num_docs": self.num_docs,
            "vocabulary": self.vocabulary,
        }
        atomic_write_text(directory / _HEADER, json.dumps(header, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> FeedbackWords:
        """Read a table written by :meth:`save` (its arrays mapped); ``ValueError`` if it is
        malformed."""
        directory = Path(directory)
        try:
            header = json.loads((directory / _HEADER).read_text(encoding="utf-8"))
            arrays = {
                name: np.load(
                    directory / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False
                )
                for name in _ARRAYS
            }
        except (OSError, ValueError) as exc:
            raise ValueError(f"feedback words {directory} cannot be read: {exc}") from exc
        if not isinstance(header, dict) or (header.get("format"), header.get("version")) != (
            _FORMAT,
            _VERSION,
        ):
            raise ValueError(f"feedback words {directory} are not {_FORMAT} version {_VERSION}.")
        offsets = arrays["offsets"]
        agree = (
            len(offsets) == header["num_docs"] + 1
            and len(arrays["words"]) == len(arrays["counts"]) == int(offsets[-1])
            and int(offsets[0]) == 0
        )
        if not agree:
            raise ValueError(f"feedback words {directory} are inconsistent: sizes disagree.")
        return cls(int(header["beams"]), list(header["vocabulary"]), **arrays)


def document_windows(corpus: Corpus, docs: Sequence[int]) -> tuple[list[str], list[int]]:
    """The windows of ``FEEDBACK_WINDOW_WORDS`` words the model reads of each of ``docs``,
    and the document of each."""
    windows, owners = [], []
    for doc in docs:
        # Title and text, as the model was trained on them (Corpus.full_texts, one document).
        words = f"{corpus.titles[doc]} {corpus.texts[doc]}".split()
        for start in range(0, max(len(words), 1), FEEDBACK_WINDOW_WORDS):
            windows.append(" ".join(words[start : start + FEEDBACK_WINDOW_WORDS]))
            owners.append(doc)
    return windows, owners


def read_counts(
    corpus: Corpus, docs: Sequence[int], read: Reader, batch_size: int, beams: int
) -> dict[int, dict[str, int]]:
    """Per document of ``docs``, the analysed words the model generates reading it in windows,
    each with the number of windows it was generated in."""
    windows, owners = document_windows(corpus, docs)
    counts: dict[int, dict[str, int]] = {doc: {} for doc in docs}
    for doc, words in zip(owners, read(windows, batch_size, beams), strict=True):
        for word in set(words):
            counts[doc][word] = counts[doc].get(word, 0) + 1
    return counts


def read_documents(
    corpus: Corpus,
    read: Reader,
    beams: int,
    batch_size: int = 32,
    start: int = 0,
    progress_bar: bool = True,
    chunk: int = 256,
    keep: Callable[[FeedbackWords], None] | None = None,
    keep_seconds: float = KEEP_SECONDS,
) -> FeedbackWords:
    """What the model generates reading documents ``start:`` of ``corpus``, in batches of
    ``batch_size`` windows (``chunk`` documents at a time, with a progress bar). With
    ``keep``, every ``keep_seconds`` the table of the documents read so far is handed to it
    (:func:`keep_table`), so that an interrupted read can resume (:func:`kept_table`)."""
    docs = range(start, len(corpus.doc_ids))
    counted: list[dict[str, int]] = []
    kept = time.monotonic()
    with tqdm(total=len(docs), desc="feedback words", unit="doc", disable=not progress_bar) as bar:
        for first in range(0, len(docs), chunk):
            part = list(docs[first : first + chunk])
            counts = read_counts(corpus, part, read, batch_size, beams)
            counted += [counts[doc] for doc in part]
            bar.update(len(part))
            more = first + chunk < len(docs)
            if keep is not None and more and time.monotonic() - kept >= keep_seconds:
                keep(FeedbackWords.from_counts(beams, counted))
                kept = time.monotonic()
    return FeedbackWords.from_counts(beams, counted)


def model_fingerprint(model: torch.nn.Module) -> str:
    """A digest of ``model``'s weights: a kept table is only resumed by the model that read it."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def keep_table(directory: Path, table: FeedbackWords, fingerprint: str) -> None:
    """Keep ``table`` (the documents read so far) in ``directory`` with the ``fingerprint`` of
    the model that read it; its note is written last, so a table cut short is not resumed."""
    directory = Path(directory)
    (directory / _CHECKPOINT).unlink(missing_ok=True)
    table.save(directory)
    note = {"fingerprint": fingerprint, "num_docs": table.num_docs, "beams": table.beams}
    atomic_write_text(directory / _CHECKPOINT, json.dumps(note))


def kept_table(directory: Path, fingerprint: str, beams: int) -> FeedbackWords | None:
    """The table :func:`keep_table` kept in ``directory``, if the model of ``fingerprint`` read
    it at ``beams`` beams; None when there is none (or another model's, with a warning)."""
    directory = Path(directory)
    if not (directory / _CHECKPOINT).exists():
        return None
    try:
        note = json.loads((directory / _CHECKPOINT).read_text(encoding="utf-8"))
        table = FeedbackWords.load(directory, mmap=False)
    except (OSError, ValueError) as exc:
        log.warning(
            "The kept feedback words in %s cannot be read (%s); reading again.", directory, exc
        )
        return None
    if (note.get("fingerprint"), note.get("num_docs"), table.beams) != (
        fingerprint,
        table.num_docs,
        beams,
    ):
        log.warning(
            "The kept feedback words in %s were read by another model or beam count; "
            "reading again.",
            directory,
        )
        return None
    return table


def shares_of(counted: Mapping[str, int]) -> dict[str, float]:
    """Each word's share of a document's generated words (window counts over their sum)."""
    total = sum(counted.values()) or 1
    return {word: n / total for word, n in counted.items()}


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
    first = Ranking(np.zeros(word_index.num_docs), np.zeros(word_index.num_docs, dtype=bool))
    for doc, score in ranked:
        first.scores[doc] = score
        first.ranked[doc] = True
    return add_feedback_to(options, first, ranked[0][1] if ranked else None, shares, word_index, k)


def add_feedback_to(
    options: Any,
    first: Ranking,
    best: float | None,
    shares: Sequence[Mapping[str, float]],
    word_index: WordIndex,
    k: int | None,
) -> list[tuple[int, float]]:
    """:func:`add_feedback` of a :class:`Ranking` whose best score is ``best`` (None: it ranks
    nothing)."""
    weights: dict[str, float] = {}
    for document in shares:
        for word, share in document.items():
            weights[word] = weights.get(word, 0.0) + share
    heaviest = sorted(weights.items(), key=lambda item: (-item[1], item[0]))
    extra = word_index.weighted_bm25(
        dict(heaviest[: options.feedback_words]), options.k1, options.b
    )
    if best is None or not extra.max() > 0:
        return first.top(k)
    scale = options.feedback_weight * best / extra.max()
    where = np.flatnonzero(extra)
    scores, ranked = first.scores.copy(), first.ranked.copy()
    scores[where] += scale * extra[where]
    ranked[where] = True
    return Ranking(scores, ranked).top(k)


class GenerativeFeedback:
    """The feedback stage of one retriever: its model reads documents through ``read``; what it
    generated per document comes from the index's :class:`FeedbackWords` (read at index time)
    where they hold it at the beam count searched with, otherwise it is read now and cached, as
    the model does not change under a retriever. The settings come with each call (a
    retriever's options may change between searches)."""

    def __init__(self, index: Any, read: Reader) -> None:
        # An n-gram index: its ``corpus`` is read, its ``words`` score and its
        # ``feedback_words`` (or None) hold what was read at index time, as they are at the
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
        rankings: list[Ranking],
        k: int,
        batch_size: int,
        beams: int,
    ) -> list[list[tuple[int, float]]]:
        """Each first ranking of the whole corpus plus the BM25 of the words generated from
        its best documents (``options.feedback_docs``), best first, cut to ``k``."""
        best = [ranking.top(options.feedback_docs) for ranking in rankings]
        shares = self.words_of(sorted({d for top in best for d, _ in top}), batch_size, beams)
        words = self.index.words
        return [
            add_feedback_to(
                options,
                ranking,
                top[0][1] if top else None,
                [shares[doc] for doc, _ in top],
                words,
                k,
            )
            for ranking, top in zip(rankings, best, strict=True)
        ]

    def words_of(
        self, docs: Sequence[int], batch_size: int, beams: int
    ) -> dict[int, dict[str, float]]:
        """Per document (by index), the analysed words the model generates reading it in
        windows of ``FEEDBACK_WINDOW_WORDS`` words, each with its share of them (a word counts
        once per window)."""
        stored: FeedbackWords | None = getattr(self.index, "feedback_words", None)
        if stored is not None and stored.beams != beams:
            stored = None
        out: dict[int, dict[str, float]] = {}
        cache = self._cache.setdefault(beams, {})
        missing = []
        for doc in dict.fromkeys(docs):
            if stored is not None and doc < stored.num_docs:
                out[doc] = shares_of(stored.counts_of(doc))
            elif doc in cache:
                out[doc] = cache[doc]
            else:
                missing.append(doc)
        if missing:
            counts = read_counts(self.index.corpus, missing, self.read, batch_size, beams)
            for doc, counted in counts.items():
                cache[doc] = out[doc] = shares_of(counted)
        return {doc: out[doc] for doc in docs}
