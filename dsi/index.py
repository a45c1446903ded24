"""A generative index: the one lifecycle of every identifier kind (:class:`IndexLifecycle`:
build, add, save, load) and the docid kinds' index (:class:`GenerativeIndex`: tokenizer + T5 +
docid map + trie), built from a corpus, saved as a directory.

The directory's format, manifest and atomic save are :mod:`dsi.index_format`'s; what an
addition (continual indexing, as in DSI++) checks, replays and records is :mod:`dsi.continual`'s.
A docid index adds ``docids.jsonl`` (doc id -> docid symbol indices, with ``docid_vocab.json``
and the scheme's data) and ``trie.marisa`` (the prefix trie over docid token sequences; how
docids are written as tokens is :mod:`dsi.docid_tokens`').
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import itertools
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import torch

from docid.base import DocidMap, fit_docids, get_scheme
from docid.guard import ensure_replaceable, writer_lock
from docid.io import (
    atomic_write_text,
    publish_dir,
    staging_dir,
)
from dsi.config import AddConfig, GeneratorConfig, IndexConfig, TrainConfig
from dsi.continual import (
    add_entry,
    add_fingerprint,
    check_new_documents,
    replay_doc_ids,
    train_with_replay,
)
from dsi.data import Corpus, TrainingQueries
from dsi.docid_tokens import SPELLED, DocidTokens, SpelledTokens, docid_tokens, new_token_count
from dsi.example_store import (
    POOL,
    TRAIN,
    ExampleStore,
    StoreWriter,
    open_store,
    tokenized,
    write_pairs,
    write_views,
)
from dsi.examples import Chain, Examples, count_tasks, mix_examples
from dsi.index_format import (
    CONFIG_FILE,
    GENERATOR_DIR,
    GENERATOR_KIND,
    TRAINING_LOG_FILE,
    TRAINING_QUERIES_FILE,
    WORK_KIND,
    IndexLoadError,
    load_documents,
    load_training_log,
    load_training_pairs,
    read_manifest,
    resolve_index_dir,
    save_index,
    utc_now,
    verify_checksums,
)
from dsi.model import (
    build_model,
    grow_vocabulary,
    load_model,
    load_tokenizer,
    num_parameters,
    open_model,
    takes_copy_head,
    train_tokenizer,
)
from dsi.pseudo_queries import QueryGenerator
from dsi.timing import stage
from dsi.train import TrainStats, train
from trie.prefix import PrefixTrie

log = logging.getLogger(__name__)


def holds_work_dir(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``method`` holding the writer lock of its ``work_dir`` argument, so that two builds
    or additions never share a work directory (:class:`docid.guard.WriterBusy` for the second).

    Under ``accelerate launch`` all processes build into one work directory together: only the
    main one takes the lock.
    """
    signature = inspect.signature(method)

    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        work_dir = signature.bind(*args, **kwargs).arguments.get("work_dir")
        if work_dir is None or not _is_main_process():
            return method(*args, **kwargs)
        with writer_lock(Path(work_dir)):
            return method(*args, **kwargs)

    return run


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


class Fitted(NamedTuple):
    """What a build has fitted when the kind makes its decoding structures."""

    config: IndexConfig
    tokenizer: Any
    model: torch.nn.Module
    corpus: Corpus
    identifiers: Any  # the kind's ``_kind_identifiers``
    offset: int  # the first identifier token id (the text vocabulary's size)
    pairs: list[tuple[str, str]]  # the (training query, doc id) pairs the index keeps


class Addition(NamedTuple):
    """What an addition hands the kind to make the added documents' examples."""

    corpus: Corpus  # the added documents
    pairs: list[tuple[str, str]]  # their (training query, doc id) pairs
    train_config: TrainConfig
    config: AddConfig
    work_dir: Path | None


class IndexLifecycle:
    """The one lifecycle of an index, whatever its identifier kind: build, add, save and load.

    An identifier kind is a dataclass subclass holding the fields below plus its own decoding
    structures, and supplies only what differs between kinds through the ``_kind_*`` hooks:
    its identifiers, its training examples, its decoding structures and how they are saved,
    loaded and checked. Everything else (the work directory, the tokenizer and model, the
    training queries, the query generator, training, replay, lineage, the manifest) is here.
    """

    # Held by every kind (fields of the dataclass subclasses).
    config: IndexConfig
    tokenizer: Any
    model: torch.nn.Module
    corpus: Corpus
    lineage: list[dict[str, Any]]
    training_pairs: list[tuple[str, str]]
    query_generator: QueryGenerator | None
    training_log: list[dict[str, float]]

    # ----------------------------------------------------------------- building
    @classmethod
    @holds_work_dir
    def build(
        cls,
        corpus: Corpus,
        config: IndexConfig | None = None,
        training_queries: TrainingQueries | None = None,
        work_dir: Path | None = None,
        progress_bar: bool = True,
        monitor: Callable[[Any, float], None] | None = None,
        monitor_minutes: float = 5.0,
    ) -> Any:
        """Fit the identifiers, train the model on the corpus (and queries), and build the
        decoding structures.

        ``work_dir`` keeps the tokenizer, identifiers and training checkpoints; calling
        ``build`` again with the same corpus, config and work_dir resumes where an interrupted
        run stopped (a work_dir of another corpus or config is moved aside, not deleted).
        ``monitor(index, training_seconds)`` sees the index as it is every ``monitor_minutes``
        of training (its model is the one in training: search it, don't keep it).
        """
        config = cls._kind_config(config)
        if len(corpus.doc_ids) == 0:
            raise ValueError("The corpus is empty: there is nothing to index.")
        started = time.monotonic()
        if work_dir is not None:
            work_dir = Path(work_dir)
            claim_work_dir(work_dir, cls._kind_fingerprint(corpus, config, training_queries))
        texts = corpus.full_texts()
        timings: dict[str, float] = {}
        with stage("identifiers", timings):
            identifiers = cls._kind_identifiers(config, corpus, work_dir)
        with stage("tokenizer", timings):
            tokenizer, model, offset = make_model(
                config, texts, training_queries, identifiers, work_dir
            )
        position = corpus.positions()
        pairs = [] if training_queries is None else training_queries.pairs(set(position))
        with stage("identifiers", timings):
            fitted = Fitted(config, tokenizer, model, corpus, identifiers, offset, pairs)
            parts = cls._kind_structures(fitted)
        index = cls(
            config=config,
            tokenizer=tokenizer,
            model=model,
            corpus=corpus,
            training_pairs=pairs,
            **parts,
        )
        with stage("query_generator", timings):
            generator, generated = kept_generator(
                config,
                tokenizer,
                texts,
                [(position[d], q) for q, d in pairs],
                work_dir,
                progress_bar,
            )
        pseudo = (
            [(q, d) for d, qs in zip(corpus.doc_ids, generated, strict=True) for q in qs]
            if generated
            else []
        )

        def fill(out: StoreWriter) -> dict[str, Any]:
            per_epoch = index._kind_training_examples(pairs, out)
            if pseudo:
                index._kind_query_examples(pseudo, config.train, "pseudo", out, TRAIN)
            return {"pool_per_epoch": per_epoch}

        with stage("examples", timings):
            key = store_key("build", config.to_dict(), len(corpus.doc_ids), pairs, pseudo)
            store = example_store(work_dir, key, model.config.eos_token_id, fill)
            examples, pool = store.part(TRAIN), store.part(POOL)
            per_epoch = int(store.extra["pool_per_epoch"])

        def watch(live_model: torch.nn.Module, seconds: float) -> None:
            monitor(dataclasses.replace(index, model=live_model), seconds)

        with stage("training", timings):
            stats = train_model(
                model,
                examples,
                config,
                len(corpus.doc_ids),
                work_dir,
                progress_bar,
                monitor=None if monitor is None else watch,
                monitor_minutes=monitor_minutes,
                pool=pool,
                pool_per_epoch=per_epoch,
            )
        index.model = model.cpu().eval()
        entry = build_entry(
            corpus,
            training_queries,
            Chain([examples, pool]),
            stats,
            generator,
            started,
            **index._kind_entry(),
            stage_seconds=timings,
        )
        index.lineage = [entry]
        index.query_generator = generator
        index.training_log = stats.history
        return index

    @classmethod
    def prepare_work_dir(
        cls,
        state: Any,
        corpus: Corpus,
        config: IndexConfig | None,
        training_queries: TrainingQueries | None,
        work_dir: Path,
    ) -> None:
        """Before a distributed build: fit the identifiers and the tokenizer in the main
        process, then let the others read them.

        ``build`` caches both in ``work_dir``; without this, every process of a distributed
        build would fit its own (possibly different) ones and write the same files while
        another reads them. ``state`` is accelerate's ``PartialState``.
        """
        config = cls._kind_config(config)
        with state.main_process_first():
            claim_work_dir(work_dir, cls._kind_fingerprint(corpus, config, training_queries))
            texts = corpus.full_texts()
            identifiers = cls._kind_identifiers(config, corpus, work_dir)
            make_model(config, texts, training_queries, identifiers, work_dir)

    # ----------------------------------------------------------------- adding
    @holds_work_dir
    def add(
        self,
        corpus: Corpus,
        training_queries: TrainingQueries | None = None,
        config: AddConfig | None = None,
        progress_bar: bool = True,
        work_dir: Path | None = None,
    ) -> dict[str, Any]:
        """Index the new documents of ``corpus`` and return the lineage entry of this addition.

        The kind gives the new documents their identifiers (``_kind_addition``); training
        continues with a fresh optimizer on the new documents (and their training queries)
        mixed with replay of old documents (``AddConfig.replay``): their own examples
        (``"documents"``), their training queries (``"queries"``), or queries generated for
        them (``"generative"``, DSI++'s generative memory, mixed with their real training
        queries; a query generator is trained first if the index keeps none). ``work_dir``
        keeps identifiers, generated queries and training checkpoints so that an interrupted
        addition resumes. If training fails, discard this object (its model may be
        half-trained); a saved index directory is never touched.
        """
        config = config or AddConfig()
        started = time.monotonic()
        check_new_documents(corpus, self.corpus.positions())
        if config.replay == "queries" and not self.training_pairs:
            raise ValueError(
                "Replay of training queries needs the queries of the indexed documents, and this "
                "index has none; use replay 'generative' or 'documents'."
            )
        if work_dir is not None:
            work_dir = Path(work_dir)
            claim_work_dir(
                work_dir,
                add_fingerprint(
                    self.lineage, len(self.corpus.doc_ids), corpus, training_queries, config
                ),
            )
        train_config = config.train_config(self.config.train)
        pairs = [] if training_queries is None else training_queries.pairs(set(corpus.doc_ids))
        new = Addition(corpus, pairs, train_config, config, work_dir)
        added = self._kind_addition(new)
        old, real, generated, generator_trained = self._replay_sources(
            config, work_dir, progress_bar
        )

        def fill(out: StoreWriter) -> dict[str, Any]:
            self._kind_addition_examples(new, added, out)
            if config.replay == "documents":
                self._kind_document_replay(old, train_config, config, out, "replay")
            elif config.replay != "none":
                self._kind_query_examples(real, train_config, "replay-query", out, "replay-query")
                if config.replay == "generative":
                    self._kind_query_examples(
                        generated, train_config, "replay-generated", out, "replay"
                    )
            return {}

        key = store_key(
            "add",
            config.to_dict(),
            len(corpus.doc_ids),
            pairs,
            [len(self.corpus.doc_ids), old, real, generated],
        )
        store = example_store(work_dir, key, self.model.config.eos_token_id, fill)
        examples = store.part(TRAIN)
        pool = replay_pool(store, config)
        stats, per_epoch = train_with_replay(
            self.model, examples, pool, config, train_config, work_dir, progress_bar
        )
        self.model = self.model.cpu().eval()
        merged = Corpus.concat([self.corpus, corpus])
        parts = self._kind_grown(merged, added, self.training_pairs + pairs)
        # Commit: nothing below can fail halfway.
        for name, value in parts.items():
            setattr(self, name, value)
        self.corpus = merged
        self.training_pairs = self.training_pairs + pairs
        entry = add_entry(
            self.lineage,
            corpus,
            len(merged.doc_ids),
            pairs,
            config,
            examples,
            (pool, per_epoch, generator_trained),
            stats,
            started,
            **self._kind_entry(added),
        )
        self.lineage.append(entry)
        return entry

    def _replay_sources(
        self, config: AddConfig, work_dir: Path | None, progress_bar: bool
    ) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]], bool]:
        """What an addition replays of the documents already indexed: their ids, their
        training queries and generated queries as (query, doc id) pairs; and whether a
        generator was trained."""
        if config.replay == "none":
            return [], [], [], False
        old = replay_doc_ids(self.corpus, config)
        if config.replay == "documents":
            return old, [], [], False
        wanted = set(old)
        real = [(q, d) for q, d in self.training_pairs if d in wanted]
        if config.replay == "queries":
            return old, real, [], False
        generated, trained = generative_memory(self, old, config, work_dir, progress_bar)
        return old, real, generated, trained

    # ------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write the index to ``directory``; an existing index there is replaced only when complete.

        Anything there but an index or an empty folder is refused before any writing
        (:class:`docid.guard.PathRefused`), and so is a directory another process is writing
        (:class:`docid.guard.WriterBusy`): the directory's writer lock is held meanwhile.
        """
        return save_index(self, Path(directory), self._kind_save, **self._kind_manifest())

    @classmethod
    def load(cls, directory: str | Path, verify: bool | str = True) -> Any:
        """Load an index directory, checking its format version, files and checksums
        (``verify=False``: that every file it lists is there, not their checksums; ``True``:
        the sha256 of files up to ``dsi.index_format.HASH_ON_LOAD_BYTES``, the size of larger
        ones, which are mapped; ``"full"``: the sha256 of every file)."""
        directory = resolve_index_dir(Path(directory))
        manifest = read_manifest(directory)
        cls._kind_check_scheme(directory, manifest.get("docid_scheme"))
        verify_checksums(directory, manifest, hashes=verify)
        try:
            config = cls._kind_loaded_config(IndexConfig.load(directory / CONFIG_FILE))
            tokenizer = load_tokenizer(directory / "model")
            model = open_model(directory / "model", use_safetensors=True).eval()
            parts = cls._kind_load(directory, manifest)
            corpus = load_documents(directory)
            pairs = load_training_pairs(directory / TRAINING_QUERIES_FILE)
            generator = None
            if (directory / GENERATOR_DIR).is_dir():
                generator = QueryGenerator.load(directory / GENERATOR_DIR, tokenizer)
            training_log = load_training_log(directory / TRAINING_LOG_FILE)
        except IndexLoadError:
            raise
        except Exception as exc:  # one sentence naming the index, whatever broke underneath
            raise IndexLoadError(f"Index {directory} cannot be loaded: {exc}") from exc
        index = cls(
            config=config,
            tokenizer=tokenizer,
            model=model,
            corpus=corpus,
            lineage=manifest["lineage"],
            training_pairs=pairs,
            query_generator=generator,
            training_log=training_log,
            **parts,
        )
        index._kind_check_loaded(directory, manifest)
        return index

    # ------------------------------------------------- what an identifier kind supplies
    @classmethod
    def _kind_config(cls, config: IndexConfig | None) -> IndexConfig:
        """The settings a build of this kind runs with (``None``: the defaults)."""
        raise NotImplementedError

    @classmethod
    def _kind_fingerprint(cls, corpus: Corpus, config: IndexConfig, queries: Any) -> str:
        """What a build's work directory belongs to (:func:`build_fingerprint`)."""
        return build_fingerprint(corpus, config, queries)

    @classmethod
    def _kind_identifiers(cls, config: IndexConfig, corpus: Corpus, work_dir: Path | None) -> Any:
        """The documents' identifiers, fitted before the model: anything with the ``symbols``
        that :func:`make_model` adds to the vocabulary."""
        raise NotImplementedError

    @classmethod
    def _kind_structures(cls, fitted: Fitted) -> dict[str, Any]:
        """The kind's own fields: its identifiers and the structures that constrain decoding."""
        raise NotImplementedError

    def _kind_training_examples(self, pairs: list[tuple[str, str]], out: StoreWriter) -> int:
        """Write a build's examples for the corpus and its (query, doc id) ``pairs`` into part
        ``TRAIN`` of ``out``, and into part ``POOL`` a pool that many examples are drawn from
        afresh every epoch; return that count (0: no pool)."""
        raise NotImplementedError

    def _kind_query_examples(
        self,
        pairs: list[tuple[str, str]],
        train_config: TrainConfig,
        task: str,
        out: StoreWriter,
        part: str,
    ) -> None:
        """Write (query, doc id of this index) pairs as examples labelled ``task`` (generated
        queries, replayed queries) into ``part`` of ``out``."""
        raise NotImplementedError

    def _kind_addition(self, new: Addition) -> Any:
        """Whatever the kind makes for the added documents that their examples read and
        ``_kind_grown`` commits (new identifiers)."""
        raise NotImplementedError

    def _kind_addition_examples(self, new: Addition, added: Any, out: StoreWriter) -> None:
        """Write the examples of the added documents and their training queries into part
        ``TRAIN`` of ``out``."""
        raise NotImplementedError

    def _kind_document_replay(
        self,
        doc_ids: list[str],
        train_config: TrainConfig,
        config: AddConfig,
        out: StoreWriter,
        part: str,
    ) -> None:
        """Write examples of indexed documents, replayed while adding (``replay="documents"``),
        into ``part`` of ``out``."""
        raise NotImplementedError

    def _kind_grown(
        self, corpus: Corpus, added: Any, pairs: Sequence[tuple[str, str]]
    ) -> dict[str, Any]:
        """The kind's fields once ``corpus`` (the old and the added documents) is indexed, with
        ``pairs`` the training pairs of both."""
        raise NotImplementedError

    def _kind_entry(self, added: Any = None) -> dict[str, Any]:
        """What a lineage entry of this kind records beyond the common keys."""
        return {}

    def _kind_save(self, staged: Path) -> None:
        """Write the kind's own files into the staged index directory."""
        raise NotImplementedError

    def _kind_manifest(self) -> dict[str, Any]:
        """The manifest's kind-dependent keys: num_docs, docid_scheme, docid_offset, ..."""
        raise NotImplementedError

    @classmethod
    def _kind_check_scheme(cls, directory: Path, scheme: str | None) -> None:
        """Refuse an index whose manifest names another kind's identifiers."""
        raise NotImplementedError

    @classmethod
    def _kind_loaded_config(cls, config: IndexConfig) -> IndexConfig:
        """The settings a saved index of this kind is searched with."""
        return config

    @classmethod
    def _kind_load(cls, directory: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """The kind's own fields, read from ``directory``."""
        raise NotImplementedError

    def _kind_check_loaded(self, directory: Path, manifest: Mapping[str, Any]) -> None:
        """Refuse a loaded index whose parts disagree (:class:`IndexLoadError`)."""
        raise NotImplementedError


@dataclass
class GenerativeIndex(IndexLifecycle):
    """Everything needed to answer queries by decoding docids (the docid kinds: semantic,
    atomic, naive and any scheme registered in :mod:`docid`)."""

    config: IndexConfig
    tokenizer: Any
    model: torch.nn.Module
    docids: DocidMap
    trie: PrefixTrie
    docid_offset: int
    corpus: Corpus
    lineage: list[dict[str, Any]] = field(default_factory=list)
    # (query text, doc id) of every training query learned, kept for replay when adding.
    training_pairs: list[tuple[str, str]] = field(default_factory=list)
    query_generator: QueryGenerator | None = None
    # The loss history of the build's training (``TrainStats.history``): training_log.jsonl.
    training_log: list[dict[str, float]] = field(default_factory=list)
    _tokens: DocidTokens | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def docid_tokens(self) -> DocidTokens:
        """How this index writes its docids as model tokens (:mod:`dsi.docid_tokens`)."""
        if self._tokens is None or self._tokens.docids is not self.docids:
            self._tokens = docid_tokens(self.docids, self.docid_offset, self.tokenizer)
        return self._tokens

    def _target(self, seq: tuple[int, ...]) -> list[int]:
        return self.docid_tokens.tokens(seq) + [self.model.config.eos_token_id]

    # ------------------------------------------------------------ building
    @classmethod
    def _kind_config(cls, config: IndexConfig | None) -> IndexConfig:
        return config or IndexConfig()

    @classmethod
    def _kind_identifiers(cls, config: IndexConfig, corpus: Corpus, work_dir: Path | None) -> Any:
        return _cached_docids(work_dir, config, corpus)

    @classmethod
    def _kind_structures(cls, fitted: Fitted) -> dict[str, Any]:
        docids, offset = fitted.identifiers, fitted.offset
        trie = _docid_trie(docid_tokens(docids, offset, fitted.tokenizer), fitted.model)
        return {"docids": docids, "trie": trie, "docid_offset": offset}

    def _kind_training_examples(self, pairs: list[tuple[str, str]], out: StoreWriter) -> int:
        train_config = self.config.train
        self._document_examples(self.corpus, train_config, train_config.seed, out, TRAIN)
        self._kind_query_examples(pairs, train_config, "retrieve", out, TRAIN)
        return 0

    def _document_examples(
        self,
        corpus: Corpus,
        train_config: TrainConfig,
        seed: int,
        out: StoreWriter,
        part: str,
        task: str = "index",
    ) -> None:
        """Document -> docid examples of ``corpus``'s documents (all of them in this index),
        their tokens stored once and their views index arithmetic over them."""
        documents = zip(
            tokenized(self.tokenizer, corpus.full_texts()),
            (self._target(self.docids.sequence(d)) for d in corpus.doc_ids),
            strict=True,
        )
        write_views(out, part, task, documents, train_config, seed)

    def _kind_query_examples(
        self,
        pairs: list[tuple[str, str]],
        train_config: TrainConfig,
        task: str,
        out: StoreWriter,
        part: str,
    ) -> None:
        if not pairs:
            return
        # The build's and addition's own training queries are repeated; replayed or generated
        # ones are not.
        repeats = train_config.query_repeats if task == "retrieve" else 1
        queries = zip(
            tokenized(self.tokenizer, (q for q, _ in pairs)),
            (self._target(self.docids.sequence(d)) for _, d in pairs),
            strict=True,
        )
        write_pairs(out, part, task, queries, train_config, repeats)

    # ------------------------------------------------------------ adding
    def _kind_addition(self, new: Addition) -> tuple[DocidMap, int]:
        """Existing docids never change; new ones come from the docid scheme (semantic: the
        nearest leaf of the existing tree; atomic: new symbols; naive: the ids' characters;
        title, keywords: the new documents' words, suffixed where an old docid has them), and
        the model's vocabulary grows by any new symbols."""
        corpus = new.corpus
        docids = self._added_docids(
            corpus.doc_ids, docid_texts(self.docids.scheme, corpus), new.work_dir
        )
        grow_vocabulary(self.model, self.docid_offset + new_token_count(docids, self.tokenizer))
        return docids, len(docids.symbols) - len(self.docids.symbols)

    def _kind_addition_examples(
        self, new: Addition, added: tuple[DocidMap, int], out: StoreWriter
    ) -> None:
        # The new documents' examples read the grown map; the index's stays until commit.
        grown = dataclasses.replace(self, docids=added[0])
        grown._document_examples(new.corpus, new.train_config, new.config.seed, out, TRAIN)
        grown._kind_query_examples(new.pairs, new.train_config, "retrieve", out, TRAIN)

    def _kind_document_replay(
        self,
        doc_ids: list[str],
        train_config: TrainConfig,
        config: AddConfig,
        out: StoreWriter,
        part: str,
    ) -> None:
        self._document_examples(
            self.corpus.subset(doc_ids), train_config, config.seed, out, part, "replay-index"
        )

    def _kind_grown(
        self, corpus: Corpus, added: tuple[DocidMap, int], pairs: Sequence[tuple[str, str]]
    ) -> dict[str, Any]:
        docids = added[0]
        tokens = docid_tokens(docids, self.docid_offset, self.tokenizer)
        return {"docids": docids, "trie": _docid_trie(tokens, self.model)}

    def _kind_entry(self, added: tuple[DocidMap, int] | None = None) -> dict[str, Any]:
        return {} if added is None else {"new_symbols": added[1]}

    def _added_docids(
        self, doc_ids: list[str], texts: list[str], work_dir: Path | None
    ) -> DocidMap:
        """A copy of the docid map with the new documents added (cached in ``work_dir``)."""
        expected = len(self.docids) + len(doc_ids)
        cache = None if work_dir is None else work_dir / "docids"
        if cache is not None and (cache / "docids.jsonl").exists():
            cached = DocidMap.load(cache)
            if (
                len(cached) == expected
                and cached.doc_ids[: len(self.docids)] == self.docids.doc_ids
            ):
                return cached
        with tempfile.TemporaryDirectory(prefix="dsi-docids-") as tmp:
            # A copy through the map's own files: the index's map stays as it is until commit.
            self.docids.save(Path(tmp))
            docids = DocidMap.load(Path(tmp))
        docids.add(doc_ids, texts)
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
            docids.save(cache)
        return docids

    # ------------------------------------------------------------ persistence
    def _kind_save(self, staged: Path) -> None:
        self.docids.save(staged)
        self.trie.save(staged / "trie.marisa")

    def _kind_manifest(self) -> dict[str, Any]:
        manifest = {
            "num_docs": len(self.docids),
            "docid_scheme": self.docids.scheme,
            "docid_offset": self.docid_offset,
        }
        if isinstance(self.docid_tokens, SpelledTokens):
            manifest["docid_words"] = SPELLED
        return manifest

    @classmethod
    def _kind_check_scheme(cls, directory: Path, scheme: str | None) -> None:
        if scheme is not None and scheme.split("+")[0] == "ngram":
            raise IndexLoadError(
                f"Index {directory} holds n-gram identifiers; open it with dsi.seal or "
                "dsi.retriever.Retriever.load."
            )

    @classmethod
    def _kind_load(cls, directory: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "docids": DocidMap.load(directory),
            # Mapped: decoding touches the few pages of the prefixes it walks.
            "trie": PrefixTrie.load(directory / "trie.marisa", mmap=True),
            "docid_offset": int(manifest["docid_offset"]),
        }

    def _kind_check_loaded(self, directory: Path, manifest: Mapping[str, Any]) -> None:
        docids, trie, offset, model = self.docids, self.trie, self.docid_offset, self.model
        tokens = self.docid_tokens
        if isinstance(tokens, SpelledTokens) and manifest.get("docid_words") != SPELLED:
            raise IndexLoadError(
                f"Index {directory} was built before {docids.scheme} docids were written in the "
                "tokenizer's pieces; build it again."
            )
        if len(docids) != manifest["num_docs"] or len(trie) != len(docids):
            raise IndexLoadError(
                f"Index {directory} is inconsistent: manifest says {manifest['num_docs']} documents, "
                f"docids hold {len(docids)} and the trie {len(trie)}."
            )
        if offset + tokens.new_tokens > model.config.vocab_size:
            raise IndexLoadError(
                f"Index {directory} is inconsistent: {tokens.new_tokens} docid tokens from "
                f"token {offset} do not fit the model's vocabulary of {model.config.vocab_size}."
            )
        # A wrong offset would decode every docid to a neighbour's: check a few against the trie.
        eos = model.config.eos_token_id
        for i in sorted({0, len(docids) // 2, len(docids) - 1} if len(docids) else set()):
            if tokens.tokens(docids.sequences[i]) + [eos] not in trie:
                raise IndexLoadError(
                    f"Index {directory} is inconsistent: the docid of {docids.doc_ids[i]!r} at "
                    f"token offset {offset} is not in its trie."
                )


def _docid_trie(tokens: DocidTokens, model: torch.nn.Module) -> PrefixTrie:
    """The trie of every docid's tokens and EOS: decoding's constraint. EOS ends every docid, so
    a docid that begins another (a title that begins a longer one) stays one of its own."""
    tokens.check()
    eos = model.config.eos_token_id
    return PrefixTrie.from_sequences(
        [tokens.tokens(seq) + [eos] for seq in tokens.docids.sequences]
    )


def build_entry(
    corpus: Corpus,
    training_queries: TrainingQueries | None,
    examples: Examples,
    stats: TrainStats,
    generator: QueryGenerator | None,
    started: float,
    **extra: Any,
) -> dict[str, Any]:
    """The lineage entry of a build (either index kind; ``extra`` holds what only one records)."""
    return {
        "event": "build",
        "corpus": corpus.source,
        "documents": len(corpus.doc_ids),
        "training_queries": 0 if training_queries is None else len(training_queries.qrels),
        "examples": count_tasks(examples),
        **extra,
        "training": stats.summary(),
        "training_steps": stats.steps,
        "optimizer_updates": stats.optimizer_updates,
        # What the model was trained from, so that a result of other data cannot pass for this.
        "data_digest": training_data_digest(corpus, training_queries),
        "query_generator": None if generator is None else generator.stats,
        "seconds": round(time.monotonic() - started, 1),
        "at": utc_now(),
    }


def training_data_digest(corpus: Corpus, training_queries: TrainingQueries | None) -> str:
    """sha256 of the texts a build learns from: those its tokenizer is trained on (the documents'
    full texts, then the training queries TrainingQueries keeps) and the training examples'
    sources (each document with its id, each (query, doc id) judgement of a corpus document).

    Queries that TrainingQueries leaves out (unjudged, dev) change nothing; one more judged
    training query, or any changed document, changes it. Either index kind records it at build.
    """
    texts = corpus.full_texts()
    queries = [] if training_queries is None else training_queries.texts()
    pairs = [] if training_queries is None else training_queries.pairs(set(corpus.doc_ids))
    # JSON of lists: unambiguous where texts hold any separator character. The bytes of
    # json.dumps({"tokenizer_texts": texts + queries, "documents": [[id, text], ...],
    # "query_pairs": [[query, id], ...]}, ensure_ascii=False), hashed a piece at a time: the
    # whole string would be twice the corpus (gigabytes at a million passages).
    digest = hashlib.sha256()
    digest.update(b'{"tokenizer_texts": ')
    _hash_json_list(digest, itertools.chain(texts, queries))
    digest.update(b', "documents": ')
    _hash_json_list(digest, zip(corpus.doc_ids, texts, strict=True))
    digest.update(b', "query_pairs": ')
    _hash_json_list(digest, pairs)
    digest.update(b"}")
    return digest.hexdigest()


def _hash_json_list(digest: Any, items: Iterable[Any], chunk: int = 10_000) -> None:
    """Add to ``digest`` the UTF-8 bytes of ``json.dumps(list(items), ensure_ascii=False)``
    (tuples are lists in JSON), ``chunk`` items at a time."""
    digest.update(b"[")
    first = True
    items = iter(items)
    while batch := list(itertools.islice(items, chunk)):
        text = ", ".join(json.dumps(item, ensure_ascii=False) for item in batch)
        digest.update((text if first else ", " + text).encode("utf-8"))
        first = False
    digest.update(b"]")


def generative_memory(
    index: Any,
    doc_ids: list[str],
    config: AddConfig,
    work_dir: Path | None,
    progress_bar: bool,
) -> tuple[list[tuple[str, str]], bool]:
    """DSI++'s generative memory: ``config.generated_per_doc`` (generated query, doc id) pairs
    for each of ``doc_ids``, by the index's query generator; one is trained on the indexed
    documents and training queries first if the index has none (the bool says so)."""
    trained = False
    if index.query_generator is None:
        position = index.corpus.positions()
        pairs = [(position[d], q) for q, d in index.training_pairs if d in position]
        index.query_generator = _cached_generator(
            work_dir,
            index.tokenizer,
            index.corpus.full_texts(),
            pairs,
            index.config.generator,
            progress_bar=progress_bar,
        )
        trained = True
    generated = _cached_queries(
        work_dir,
        "replay_queries.json",
        index.query_generator,
        index.corpus.subset(doc_ids).full_texts(),
        config.generated_per_doc,
        seed=config.seed,
    )
    return [(q, d) for d, queries in zip(doc_ids, generated, strict=True) for q in queries], trained


def train_model(
    model: torch.nn.Module,
    examples: Examples,
    config: IndexConfig,
    num_docs: int,
    work_dir: Path | None,
    progress_bar: bool,
    monitor: Callable[[torch.nn.Module, float], None] | None = None,
    monitor_minutes: float = 5.0,
    pool: Examples | None = None,
    pool_per_epoch: int = 0,
) -> TrainStats:
    """Train on ``examples`` (and ``pool_per_epoch`` examples drawn afresh from ``pool`` every
    epoch), checkpointing into ``work_dir`` so an interrupted build resumes."""
    drawn = f" + {pool_per_epoch} of {len(pool)} per epoch" if pool and pool_per_epoch else ""
    log.info(
        "Training a %.1fM-parameter T5 on %d examples%s (%d documents).",
        num_parameters(model) / 1e6,
        len(examples),
        drawn,
        num_docs,
    )
    return train(
        model,
        examples,
        config.train,
        checkpoint_dir=None if work_dir is None else work_dir / "checkpoint",
        pad_id=model.config.pad_token_id,
        progress_bar=progress_bar,
        monitor=monitor,
        monitor_minutes=monitor_minutes,
        replay=pool,
        replay_per_epoch=pool_per_epoch,
    )


def example_store(
    work_dir: Path | None, key: str, eos: int, fill: Callable[[StoreWriter], dict[str, Any]]
) -> ExampleStore:
    """The example store of a build or an addition in ``work_dir`` (``examples/``; a temporary
    one without a work directory): read when a run before completed it, written by ``fill``
    otherwise. In a distributed run the main process writes it and the others read it."""
    from accelerate import PartialState

    directory = None if work_dir is None else work_dir / "examples"
    state = PartialState()
    if state.num_processes == 1 or directory is None:
        return open_store(directory, key, eos, fill)
    with state.main_process_first():
        return open_store(directory, key, eos, fill)


def store_key(purpose: str, settings: dict[str, Any], num_docs: int, pairs: Any, more: Any) -> str:
    """What an example store is built from: the run's settings (budgets aside: a resumed run
    may change them), its documents' count and its (query, doc id) pairs (the work directory's
    fingerprint holds the rest)."""
    settings = json.loads(json.dumps(settings, default=str))
    for block in (settings, settings.get("train") or {}):
        for budget in ("max_minutes", "max_steps", "max_epochs", "checkpoint_minutes"):
            block.pop(budget, None)
    record = [purpose, settings, num_docs, pairs, more]
    return hashlib.sha256(json.dumps(record, default=str).encode()).hexdigest()


def replay_pool(store: ExampleStore, config: AddConfig) -> Examples:
    """An addition's replay pool in its store: the replayed documents' or queries' examples,
    generated queries mixed with real ones at ``config.real_query_share``."""
    if config.replay == "generative":
        return mix_examples(
            store.part("replay"), store.part("replay-query"), config.real_query_share
        )
    if config.replay == "queries":
        return store.part("replay-query")
    return store.part("replay")


def kept_generator(
    config: IndexConfig,
    tokenizer: Any,
    texts: list[str],
    pairs: list[tuple[int, str]],
    work_dir: Path | None,
    progress_bar: bool,
) -> tuple[QueryGenerator | None, list[list[str]]]:
    """The query generator a new index keeps (``config.query_generator`` or ``pseudo_queries``),
    trained on ``texts`` and (position, query) ``pairs``, and ``config.pseudo_queries`` queries it
    generated per text (none when that is 0)."""
    if not (config.query_generator or config.pseudo_queries > 0):
        return None, []
    generator = _cached_generator(
        work_dir, tokenizer, texts, pairs, config.generator, progress_bar=progress_bar
    )
    if config.pseudo_queries == 0:
        return generator, []
    generated = _cached_queries(
        work_dir, "pseudo_queries.json", generator, texts, config.pseudo_queries
    )
    return generator, generated


def _cached_generator(
    work_dir: Path | None,
    tokenizer,
    texts: list[str],
    pairs: list[tuple[int, str]],
    config: GeneratorConfig,
    progress_bar: bool = True,
) -> QueryGenerator:
    """Train a query generator, or load the one an interrupted run already trained."""
    saved = None if work_dir is None else work_dir / "generator"
    if saved is not None and (saved / "generator.json").exists():
        return QueryGenerator.load(saved, tokenizer)
    generator = QueryGenerator.fit(
        tokenizer,
        texts,
        pairs,
        config,
        checkpoint_dir=None if work_dir is None else work_dir / "generator_checkpoint",
        progress_bar=progress_bar,
    )
    if saved is not None:
        stage = staging_dir(saved)
        generator.save(stage)
        publish_dir(stage, saved, kind=GENERATOR_KIND)
    return generator


def _cached_queries(
    work_dir: Path | None,
    name: str,
    generator: QueryGenerator,
    texts: list[str],
    n: int,
    seed: int = 0,
) -> list[list[str]]:
    """``n`` generated queries per text (cached in ``work_dir`` as JSON)."""
    path = None if work_dir is None else work_dir / name
    if path is not None and path.exists():
        cached = json.loads(path.read_text(encoding="utf-8"))
        if len(cached) == len(texts):
            return cached
    device = "cuda" if torch.cuda.is_available() else "cpu"
    generated = generator.generate(texts, n, seed=seed, device=device)
    if path is not None:
        atomic_write_text(path, json.dumps(generated, ensure_ascii=False))
    return generated


def make_model(config, texts, training_queries, docids: DocidMap, work_dir: Path | None):
    """The tokenizer, the model and the first docid token id.

    A tokenizer already trained in ``work_dir`` is reused, so that a resumed build (and every
    process of a distributed one) reads the same; the docids' new tokens
    (:func:`dsi.docid_tokens.new_token_count`) come after the text vocabulary.
    """
    if config.model:
        # A pretrained T5 gets the copy head on top of its weights; another architecture
        # (BART, ...) trains without it: model_config describes only models built from scratch.
        # The model's configuration is read first: a name that is no model is that error.
        copy_head = takes_copy_head(config.model)
        tokenizer = load_tokenizer(config.model)
        count = new_token_count(docids, tokenizer)
        model, offset = load_model(config.model, count, copy_head)
        return tokenizer, model, offset
    tok_dir = (work_dir or Path(tempfile.mkdtemp(prefix="dsi-tokenizer-"))) / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():
        tokenizer = load_tokenizer(tok_dir)
    else:
        # Only the queries TrainingQueries lets a build read (judged in the training qrels, not
        # dev): a queries file's test queries must not shape the vocabulary.
        extra = training_queries.texts() if training_queries else []
        tokenizer = train_tokenizer(
            texts + extra,
            config.model_config.vocab_size,
            tok_dir / "spm",
            lowercase=config.model_config.lowercase,
        )
        tokenizer.save_pretrained(tok_dir)
    offset = len(tokenizer)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model_config, offset, new_token_count(docids, tokenizer))
    return tokenizer, model, offset


def docid_texts(scheme: str, corpus: Corpus) -> list[str]:
    """What docid ``scheme`` reads of each document (``DocidMap.reads``): its title (title
    docids) or its full text."""
    return list(corpus.titles) if get_scheme(scheme).reads == "title" else corpus.full_texts()


def _cached_docids(work_dir: Path | None, config: IndexConfig, corpus: Corpus) -> DocidMap:
    if work_dir is not None and (work_dir / "docids" / "docids.jsonl").exists():
        return DocidMap.load(work_dir / "docids")
    texts = docid_texts(config.docids, corpus)
    docids = fit_docids(config.docids, list(corpus.doc_ids), texts, **config.docid_options)
    if work_dir is not None:
        (work_dir / "docids").mkdir(parents=True, exist_ok=True)
        docids.save(work_dir / "docids")
    return docids


def build_fingerprint(corpus: Corpus, config: IndexConfig, queries: TrainingQueries | None) -> str:
    """What a build's work directory belongs to: the corpus, the settings (budgets aside, which
    may change between an interrupted run and its resumption) and the training queries."""
    settings = config.to_dict()
    # The budget may change between an interrupted run and its resumption.
    for key in ("max_minutes", "max_steps", "max_epochs", "checkpoint_minutes"):
        settings["train"].pop(key)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for doc_id, title, text in zip(corpus.doc_ids, corpus.titles, corpus.texts, strict=True):
        digest.update(f"{doc_id}\x00{title}\x00{text}\x01".encode())
    if queries is not None:
        digest.update(json.dumps([queries.queries, queries.qrels], sort_keys=True).encode())
    return digest.hexdigest()


def claim_work_dir(work_dir: Path, fingerprint: str) -> None:
    """Reuse ``work_dir`` only for the same ``fingerprint`` (``build_fingerprint``,
    ``add_fingerprint``); otherwise move it aside (its checkpoints may be an hour of training)
    and start afresh. Anything at ``work_dir`` that is not a work directory (nor empty) is
    refused (:class:`docid.guard.PathRefused`)."""
    ensure_replaceable(work_dir, WORK_KIND)
    stamp = work_dir / "fingerprint"
    mismatch = not stamp.exists() or stamp.read_text().strip() != fingerprint
    if work_dir.exists() and mismatch and any(work_dir.iterdir()):
        moment = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        aside = work_dir.with_name(f"{work_dir.name}.replaced-{moment}")
        for n in range(1, 1000):
            if not aside.exists():
                break
            aside = work_dir.with_name(f"{work_dir.name}.replaced-{moment}-{n}")
        work_dir.rename(aside)
        log.warning(
            "Work directory %s belongs to another corpus or config; moved it to %s (delete it "
            "when no longer needed) and starting afresh.",
            work_dir,
            aside,
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    if mismatch:
        atomic_write_text(stamp, fingerprint + "\n")
