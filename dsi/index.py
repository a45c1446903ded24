"""A generative index: the one lifecycle of every identifier kind (:class:`IndexLifecycle`:
build, add, save, load) and the docid kinds' index (:class:`GenerativeIndex`: tokenizer + T5 +
docid map + trie), built from a corpus, saved as a directory.

Directory layout (format version 2)::

    manifest.json     format, versions, counts, docid offset, sha256 of every file, lineage
    index.json        IndexConfig, exactly as IndexConfig.from_dict reads it back
    model/            config + safetensors weights + tokenizer files
    docids.jsonl      doc id -> docid symbol indices (+ docid_vocab.json, scheme data)
    trie.marisa       prefix trie over docid token sequences, marisa's own format
    documents.jsonl   the indexed documents, so evaluation, replay and additions need no corpus path
    training_queries.jsonl  (optional) the training queries as {"query", "doc_id"} lines, for replay
    query_generator/  (optional) a query generator (dsi.pseudo_queries) for generative replay
    README.md         model card (dsi.card): corpus, counts, settings, training, evaluation

``GenerativeIndex.add`` teaches an index new documents (continual indexing, as in DSI++) and
records each addition in the manifest's lineage.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import math
import platform
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import torch

import dsi
from docid.base import DocidMap, fit_docids, get_scheme
from docid.guard import Kind, claim, ensure_replaceable, writer_lock
from docid.io import (
    atomic_write_text,
    backup_path,
    publish_dir,
    published,
    sha256_file,
    staging_dir,
)
from dsi.card import write_card
from dsi.config import AddConfig, GeneratorConfig, IndexConfig, TrainConfig
from dsi.data import Corpus, TrainingQueries, load_corpus
from dsi.examples import ExampleSet, indexing_examples, mix_examples, retrieval_examples
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

FORMAT = "dsi-index"
# 2: the settings file is index.json (1: config.json, whose name Hugging Face hub tooling takes
# for a model's) and holds only the settings of docs/settings.md.
FORMAT_VERSION = 2
# The index's settings (IndexConfig); not config.json, which hub tooling reads as a model config.
CONFIG_FILE = "index.json"
TRAINING_QUERIES_FILE = "training_queries.jsonl"
# The loss history of training, one JSON line per point (step, seconds, epoch, loss).
TRAINING_LOG_FILE = "training_log.jsonl"
GENERATOR_DIR = "query_generator"
# sha256 of the manifest's other contents; manifests written before it existed have none.
MANIFEST_DIGEST = "manifest_sha256"
# What dsi may replace: an index (its manifest says so), a work directory (its fingerprint).
INDEX_KIND = Kind("a dsi index", "manifest.json", FORMAT)
WORK_KIND = Kind("a dsi work directory", "fingerprint")
GENERATOR_KIND = Kind("a saved query generator", "generator.json")


class IndexLoadError(ValueError):
    """An index directory cannot be loaded; the message says what is wrong in one sentence."""


@contextmanager
def claim_index(directory: Path, lock: bool = True) -> Iterator[None]:
    """Hold ``directory`` to write an index there (:func:`docid.guard.claim`): refused when
    something but an index stands there or at its backup name, or another process writes it."""
    with claim(directory, INDEX_KIND, lock=lock):
        ensure_replaceable(backup_path(directory), INDEX_KIND)
        yield


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
        with stage("identifiers", timings):
            fitted = Fitted(config, tokenizer, model, corpus, identifiers, offset)
            parts = cls._kind_structures(fitted)
        position = corpus.positions()
        pairs = [] if training_queries is None else training_queries.pairs(set(position))
        index = cls(
            config=config,
            tokenizer=tokenizer,
            model=model,
            corpus=corpus,
            training_pairs=pairs,
            **parts,
        )
        with stage("examples", timings):
            examples, pool, per_epoch = index._kind_training_examples(pairs)
        with stage("query_generator", timings):
            generator, generated = kept_generator(
                config,
                tokenizer,
                texts,
                [(position[d], q) for q, d in pairs],
                work_dir,
                progress_bar,
            )
        with stage("examples", timings):
            if generated:
                pseudo = [
                    (q, d) for d, qs in zip(corpus.doc_ids, generated, strict=True) for q in qs
                ]
                examples.extend(index._kind_query_examples(pseudo, config.train, "pseudo"))

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
        if len(pool):
            examples.extend(pool)
        entry = build_entry(
            corpus,
            training_queries,
            examples,
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
        examples, added = self._kind_addition(new)
        pool, generator_trained = self._replay_pool(config, train_config, work_dir, progress_bar)
        stats, per_epoch = train_with_replay(
            self.model, examples, pool, config, train_config, work_dir, progress_bar
        )
        self.model = self.model.cpu().eval()
        merged = Corpus.concat([self.corpus, corpus])
        parts = self._kind_grown(merged, added)
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

    def _replay_pool(
        self,
        config: AddConfig,
        train_config: TrainConfig,
        work_dir: Path | None,
        progress_bar: bool,
    ) -> tuple[ExampleSet, bool]:
        """Examples of the documents already indexed to mix in; and whether a generator was
        trained."""
        if config.replay == "none":
            return ExampleSet([], [], []), False
        old = replay_doc_ids(self.corpus, config)
        if config.replay == "documents":
            return self._kind_document_replay(old, train_config, config), False
        wanted = set(old)
        real = [(q, d) for q, d in self.training_pairs if d in wanted]
        real_pool = self._kind_query_examples(real, train_config, "replay-query")
        if config.replay == "queries":
            return real_pool, False
        generated, trained = generative_memory(self, old, config, work_dir, progress_bar)
        pool = self._kind_query_examples(generated, train_config, "replay-generated")
        return mix_examples(pool, real_pool, config.real_query_share), trained

    # ------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write the index to ``directory``; an existing index there is replaced only when complete.

        Anything there but an index or an empty folder is refused before any writing
        (:class:`docid.guard.PathRefused`), and so is a directory another process is writing
        (:class:`docid.guard.WriterBusy`): the directory's writer lock is held meanwhile.
        """
        return save_index(self, Path(directory), self._kind_save, **self._kind_manifest())

    @classmethod
    def load(cls, directory: str | Path, verify: bool = True) -> Any:
        """Load an index directory, checking its format version, files and checksums
        (``verify=False``: that every file it lists is there, not their checksums)."""
        directory = resolve_index_dir(Path(directory))
        manifest = read_manifest(directory)
        cls._kind_check_scheme(directory, manifest.get("docid_scheme"))
        verify_checksums(directory, manifest, hashes=verify)
        try:
            config = cls._kind_loaded_config(IndexConfig.load(directory / CONFIG_FILE))
            tokenizer = load_tokenizer(directory / "model")
            model = open_model(directory / "model", use_safetensors=True).eval()
            parts = cls._kind_load(directory, manifest)
            corpus = load_corpus(directory / "documents.jsonl")
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

    def _kind_training_examples(
        self, pairs: list[tuple[str, str]]
    ) -> tuple[ExampleSet, ExampleSet, int]:
        """A build's examples for the corpus and its (query, doc id) ``pairs``, and a pool
        that many examples are drawn from afresh every epoch (the count; 0: no pool)."""
        raise NotImplementedError

    def _kind_query_examples(
        self, pairs: list[tuple[str, str]], train_config: TrainConfig, task: str
    ) -> ExampleSet:
        """(query, doc id of this index) pairs as examples labelled ``task`` (generated
        queries, replayed queries)."""
        raise NotImplementedError

    def _kind_addition(self, new: Addition) -> tuple[ExampleSet, Any]:
        """The examples of the added documents and their training queries, and whatever the kind made
        for them that ``_kind_grown`` commits (new identifiers)."""
        raise NotImplementedError

    def _kind_document_replay(
        self, doc_ids: list[str], train_config: TrainConfig, config: AddConfig
    ) -> ExampleSet:
        """Examples of indexed documents, replayed while adding (``replay="documents"``)."""
        raise NotImplementedError

    def _kind_grown(self, corpus: Corpus, added: Any) -> dict[str, Any]:
        """The kind's fields once ``corpus`` (the old and the added documents) is indexed."""
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

    def _target(self, seq: tuple[int, ...]) -> list[int]:
        return [self.docid_offset + s for s in seq] + [self.model.config.eos_token_id]

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
        trie = _docid_trie(docids, offset, fitted.model)
        return {"docids": docids, "trie": trie, "docid_offset": offset}

    def _kind_training_examples(
        self, pairs: list[tuple[str, str]]
    ) -> tuple[ExampleSet, ExampleSet, int]:
        train_config = self.config.train
        examples = self._document_examples(self.corpus, train_config, train_config.seed)
        examples.extend(self._kind_query_examples(pairs, train_config, "retrieve"))
        return examples, ExampleSet([], [], []), 0

    def _document_examples(self, corpus: Corpus, train_config: TrainConfig, seed: int):
        """Document -> docid examples of ``corpus``'s documents (all of them in this index)."""
        tokens = self.tokenizer(corpus.full_texts(), add_special_tokens=False)["input_ids"]
        targets = [self._target(self.docids.sequence(d)) for d in corpus.doc_ids]
        eos = self.model.config.eos_token_id
        return indexing_examples(tokens, targets, train_config, eos, seed=seed)

    def _kind_query_examples(
        self, pairs: list[tuple[str, str]], train_config: TrainConfig, task: str
    ) -> ExampleSet:
        # The build's and addition's own training queries are repeated; replayed or generated
        # ones are not.
        repeats = train_config.query_repeats if task == "retrieve" else 1
        return _query_examples(
            self.tokenizer,
            [(q, self._target(self.docids.sequence(d))) for q, d in pairs],
            train_config,
            self.model.config.eos_token_id,
            task,
            repeats,
        )

    # ------------------------------------------------------------ adding
    def _kind_addition(self, new: Addition) -> tuple[ExampleSet, Any]:
        """Existing docids never change; new ones come from the docid scheme (semantic: the
        nearest leaf of the existing tree; atomic: new symbols; naive: the ids' characters;
        title, keywords: the new documents' words, suffixed where an old docid has them), and
        the model's vocabulary grows by any new symbols."""
        corpus = new.corpus
        docids = self._added_docids(
            corpus.doc_ids, docid_texts(self.docids.scheme, corpus), new.work_dir
        )
        grow_vocabulary(self.model, self.docid_offset + len(docids.symbols))
        # The new documents' examples read the grown map; the index's stays until commit.
        grown = dataclasses.replace(self, docids=docids)
        examples = grown._document_examples(corpus, new.train_config, new.config.seed)
        examples.extend(grown._kind_query_examples(new.pairs, new.train_config, "retrieve"))
        return examples, (docids, len(docids.symbols) - len(self.docids.symbols))

    def _kind_document_replay(
        self, doc_ids: list[str], train_config: TrainConfig, config: AddConfig
    ) -> ExampleSet:
        pool = self._document_examples(self.corpus.subset(doc_ids), train_config, config.seed)
        pool.tasks = ["replay-index"] * len(pool)
        return pool

    def _kind_grown(self, corpus: Corpus, added: tuple[DocidMap, int]) -> dict[str, Any]:
        docids = added[0]
        return {"docids": docids, "trie": _docid_trie(docids, self.docid_offset, self.model)}

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
        return {
            "num_docs": len(self.docids),
            "docid_scheme": self.docids.scheme,
            "docid_offset": self.docid_offset,
        }

    @classmethod
    def _kind_check_scheme(cls, directory: Path, scheme: str | None) -> None:
        if scheme == "ngram":
            raise IndexLoadError(
                f"Index {directory} holds n-gram identifiers; open it with dsi.seal or "
                "dsi.retriever.Retriever.load."
            )

    @classmethod
    def _kind_load(cls, directory: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "docids": DocidMap.load(directory),
            "trie": PrefixTrie.load(directory / "trie.marisa"),
            "docid_offset": int(manifest["docid_offset"]),
        }

    def _kind_check_loaded(self, directory: Path, manifest: Mapping[str, Any]) -> None:
        docids, trie, offset, model = self.docids, self.trie, self.docid_offset, self.model
        if len(docids) != manifest["num_docs"] or len(trie) != len(docids):
            raise IndexLoadError(
                f"Index {directory} is inconsistent: manifest says {manifest['num_docs']} documents, "
                f"docids hold {len(docids)} and the trie {len(trie)}."
            )
        if offset + len(docids.symbols) > model.config.vocab_size:
            raise IndexLoadError(
                f"Index {directory} is inconsistent: {len(docids.symbols)} docid symbols from "
                f"token {offset} do not fit the model's vocabulary of {model.config.vocab_size}."
            )
        # A wrong offset would decode every docid to a neighbour's: check a few against the trie.
        eos = model.config.eos_token_id
        for i in sorted({0, len(docids) // 2, len(docids) - 1} if len(docids) else set()):
            if [offset + s for s in docids.sequences[i]] + [eos] not in trie:
                raise IndexLoadError(
                    f"Index {directory} is inconsistent: the docid of {docids.doc_ids[i]!r} at "
                    f"token offset {offset} is not in its trie."
                )


def _docid_trie(docids: DocidMap, offset: int, model: torch.nn.Module) -> PrefixTrie:
    """The trie of every docid's tokens (symbols from ``offset``) and EOS: decoding's constraint."""
    eos = model.config.eos_token_id
    return PrefixTrie.from_sequences(
        [[offset + s for s in seq] + [eos] for seq in docids.sequences]
    )


def train_with_replay(
    model: torch.nn.Module,
    examples: ExampleSet,
    pool: ExampleSet,
    config: AddConfig,
    train_config: Any,
    work_dir: Path | None,
    progress_bar: bool,
) -> tuple[TrainStats, int]:
    """Continue training on the new ``examples`` with ``config.replay_ratio`` replayed examples
    per new one, drawn afresh from ``pool`` every epoch; returns the stats and that count."""
    per_epoch = math.ceil(config.replay_ratio * len(examples)) if len(pool) else 0
    log.info(
        "Adding documents: %d new examples and %d replayed per epoch (%s replay, pool %d).",
        len(examples),
        per_epoch,
        config.replay,
        len(pool),
    )
    stats = train(
        model,
        examples,
        train_config,
        checkpoint_dir=None if work_dir is None else work_dir / "checkpoint",
        pad_id=model.config.pad_token_id,
        progress_bar=progress_bar,
        replay=pool,
        replay_per_epoch=per_epoch,
    )
    return stats, per_epoch


def build_entry(
    corpus: Corpus,
    training_queries: TrainingQueries | None,
    examples: ExampleSet,
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
        "examples": _count_tasks(examples),
        **extra,
        "training": stats.summary(),
        "training_steps": stats.steps,
        "optimizer_updates": stats.optimizer_updates,
        # What the model was trained from, so that a result of other data cannot pass for this.
        "data_digest": training_data_digest(corpus, training_queries),
        "query_generator": None if generator is None else generator.stats,
        "seconds": round(time.monotonic() - started, 1),
        "at": _now(),
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
    # JSON of lists: unambiguous where texts hold any separator character.
    record = {
        "tokenizer_texts": texts + queries,
        "documents": [list(row) for row in zip(corpus.doc_ids, texts, strict=True)],
        "query_pairs": [list(pair) for pair in pairs],
    }
    return hashlib.sha256(json.dumps(record, ensure_ascii=False).encode("utf-8")).hexdigest()


def add_order(lineage: list[dict[str, Any]]) -> int:
    """The number of the next addition to an index with this ``lineage`` (1 for the first)."""
    return sum(1 for e in lineage if e.get("event") == "add") + 1


def add_entry(
    lineage: list[dict[str, Any]],
    corpus: Corpus,
    total_documents: int,
    pairs: list[tuple[str, str]],
    config: AddConfig,
    examples: ExampleSet,
    replay: tuple[ExampleSet, int, bool],
    stats: TrainStats,
    started: float,
    **extra: Any,
) -> dict[str, Any]:
    """The lineage entry of an addition of ``corpus`` (either index kind; ``extra`` holds what
    only one kind records). ``replay`` is (pool, replayed per epoch, generator trained)."""
    pool, per_epoch, generator_trained = replay
    return {
        "event": "add",
        "order": add_order(lineage),
        "corpus": corpus.source,
        "documents": len(corpus.doc_ids),
        "total_documents": total_documents,
        "first_doc_id": corpus.doc_ids[0],
        "last_doc_id": corpus.doc_ids[-1],
        "training_queries": len(pairs),
        "settings": config.to_dict(),
        "examples": _count_tasks(examples),
        "replay": {
            "strategy": config.replay,
            "per_epoch": per_epoch,
            "pool": _count_tasks(pool),
            "generator_trained": generator_trained,
        },
        **extra,
        "training": stats.summary(),
        "optimizer_updates": stats.optimizer_updates,
        "seconds": round(time.monotonic() - started, 1),
        "at": _now(),
    }


def replay_doc_ids(corpus: Corpus, config: AddConfig) -> list[str]:
    """The indexed documents to replay: all of them, or ``config.replay_docs`` drawn at random."""
    old = list(corpus.doc_ids)
    if config.replay_docs is not None and config.replay_docs < len(old):
        rng = random.Random(config.seed)
        old = sorted(rng.sample(old, config.replay_docs), key=corpus.positions().get)
    return old


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


def check_new_documents(corpus: Corpus, known: Any) -> None:
    """Refuse an added corpus that is empty, repeats an id or holds a document of ``known``."""
    if len(corpus.doc_ids) == 0:
        raise ValueError("The corpus to add is empty: there is nothing to index.")
    seen: set[str] = set()
    for doc_id in corpus.doc_ids:
        if doc_id in known:
            raise ValueError(
                f"Document {doc_id!r} is already in the index; "
                "an added corpus must hold new documents only."
            )
        if doc_id in seen:
            raise ValueError(f"Document {doc_id!r} appears twice in the corpus to add.")
        seen.add(doc_id)


def add_fingerprint(
    lineage: list[dict[str, Any]],
    num_docs: int,
    corpus: Corpus,
    queries: TrainingQueries | None,
    config: AddConfig,
) -> str:
    """What an addition's work directory belongs to (budgets left out: they may change)."""
    settings = config.to_dict()
    for key in ("max_minutes", "max_steps", "max_epochs"):
        settings.pop(key)
    for key in ("max_minutes", "max_steps", "max_epochs", "checkpoint_minutes"):
        settings["train"].pop(key, None)
    state = {"lineage": lineage, "documents": num_docs, "settings": settings}
    digest = hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode())
    for doc_id, title, text in zip(corpus.doc_ids, corpus.titles, corpus.texts, strict=True):
        digest.update(f"{doc_id}\x00{title}\x00{text}\x01".encode())
    if queries is not None:
        digest.update(json.dumps([queries.queries, queries.qrels], sort_keys=True).encode())
    return digest.hexdigest()


def verify_checksums(directory: Path, manifest: Mapping[str, Any], hashes: bool = True) -> None:
    """Check that every file the manifest lists exists and (``hashes``) matches its sha256.

    With ``hashes``, a file the manifest does not list (hidden files aside) is refused too: it
    would be read unverified.
    """
    checksums = manifest["checksums"]
    for name, expected in checksums.items():
        path = Path(directory) / name
        if not path.is_file():
            raise IndexLoadError(f"Index {directory} is missing its file {name}.")
        if hashes and sha256_file(path) != expected:
            raise IndexLoadError(
                f"Index {directory} is corrupted: {name} does not match its checksum."
            )
    if hashes:
        for path in sorted(Path(directory).rglob("*")):
            relative = path.relative_to(directory)
            name = relative.as_posix()
            hidden = any(part.startswith(".") for part in relative.parts)
            if path.is_file() and not hidden and name != "manifest.json" and name not in checksums:
                raise IndexLoadError(
                    f"Index {directory} has a file {name} that its manifest does not list."
                )


def save_index(
    index: Any, directory: Path, write_parts: Callable[[Path], None], **manifest: Any
) -> Path:
    """Write what every index kind holds (config, model, tokenizer, documents, training pairs,
    query generator) and the kind's own parts (``write_parts(stage)``), then publish it as
    ``directory`` with ``manifest`` (:func:`publish_index`). Nothing but an index or an empty
    folder is replaced, and ``directory``'s writer lock is held meanwhile (:func:`claim_index`).
    """
    timings: dict[str, float] = {}
    with claim_index(directory):
        staged = staging_dir(directory)
        try:
            with stage("writing", timings):
                index.config.save(staged / CONFIG_FILE)
                index.model.save_pretrained(staged / "model", safe_serialization=True)
                index.tokenizer.save_pretrained(staged / "model")
                write_parts(staged)
                save_documents(index.corpus, staged / "documents.jsonl")
                if index.training_pairs:
                    save_training_pairs(index.training_pairs, staged / TRAINING_QUERIES_FILE)
                if index.query_generator is not None:
                    index.query_generator.save(staged / GENERATOR_DIR)
                if index.training_log:
                    save_training_log(index.training_log, staged / TRAINING_LOG_FILE)
                write_card(index, staged)
            # The first save after a build records its writing time with the other stages'.
            last = index.lineage[-1] if index.lineage else {}
            if "stage_seconds" in last and "writing" not in last["stage_seconds"]:
                last["stage_seconds"]["writing"] = timings["writing"]
            publish_index(staged, directory, model=index.model, lineage=index.lineage, **manifest)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
    return directory


def publish_index(
    stage: Path,
    directory: Path,
    *,
    model: torch.nn.Module,
    num_docs: int,
    docid_scheme: str,
    docid_offset: int,
    lineage: list[dict[str, Any]],
    **extra: Any,
) -> None:
    """Seal the fully written ``stage`` with its manifest and publish it as ``directory``."""
    files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": dsi.__version__,
        "created": _now(),
        "num_docs": num_docs,
        "docid_scheme": docid_scheme,
        "docid_offset": docid_offset,
        "vocab_size": int(model.config.vocab_size),
        **extra,
        "parameters": num_parameters(model),
        "versions": _versions(),
        "lineage": lineage,
        "checksums": {name: sha256_file(stage / name) for name in files},
    }
    write_manifest(stage / "manifest.json", manifest)
    publish_dir(stage, directory, kind=INDEX_KIND)


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically, sealed with the sha256 of its own contents."""
    sealed = {**manifest, MANIFEST_DIGEST: _manifest_digest(manifest)}
    atomic_write_text(path, json.dumps(sealed, indent=2) + "\n")


def _manifest_digest(manifest: Mapping[str, Any]) -> str:
    body = {key: value for key, value in manifest.items() if key != MANIFEST_DIGEST}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def train_model(
    model: torch.nn.Module,
    examples: ExampleSet,
    config: IndexConfig,
    num_docs: int,
    work_dir: Path | None,
    progress_bar: bool,
    monitor: Callable[[torch.nn.Module, float], None] | None = None,
    monitor_minutes: float = 5.0,
    pool: ExampleSet | None = None,
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


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and validate ``manifest.json``: format name, version and required keys."""
    path = Path(directory) / "manifest.json"
    if not Path(directory).is_dir():
        raise IndexLoadError(f"There is no index directory at {directory}.")
    if not path.is_file():
        raise IndexLoadError(f"{directory} is not a dsi index: it has no manifest.json.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexLoadError(f"Index manifest {path} is not valid JSON ({exc}).") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexLoadError(f"{path} is not a dsi index manifest.")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexLoadError(
            f"Index {directory} has format version {version}, but dsi {dsi.__version__} reads "
            f"only format version {FORMAT_VERSION}; rebuild it with `dsi index --corpus "
            f"{Path(directory) / 'documents.jsonl'} --output NEW_DIR` (with the training queries "
            "it was built with, if any)."
        )
    # After the version check: another format version may seal its manifest differently.
    if MANIFEST_DIGEST in manifest and manifest[MANIFEST_DIGEST] != _manifest_digest(manifest):
        raise IndexLoadError(
            f"Index manifest {path} is corrupted: its contents do not match its own checksum."
        )
    missing = {"num_docs", "docid_offset", "checksums", "lineage"} - set(manifest)
    if missing:
        raise IndexLoadError(f"Index manifest {path} lacks the keys {sorted(missing)}.")
    _check_manifest_types(manifest, path)
    return manifest


def _check_manifest_types(manifest: dict[str, Any], path: Path) -> None:
    """Refuse a manifest whose values have the wrong type (older manifests carry no digest)."""
    for key in ("num_docs", "docid_offset"):
        value = manifest[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise IndexLoadError(
                f"Index manifest {path} is corrupted: {key} is {value!r}, not a count."
            )
    checksums = manifest["checksums"]
    if not isinstance(checksums, dict) or not checksums:
        raise IndexLoadError(
            f"Index manifest {path} is corrupted: checksums is not a table of the index's files."
        )
    for name, digest in checksums.items():
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or not isinstance(digest, str):
            raise IndexLoadError(
                f"Index manifest {path} is corrupted: its checksum entry {name!r} is invalid."
            )
    if not isinstance(manifest["lineage"], list):
        raise IndexLoadError(f"Index manifest {path} is corrupted: lineage is not a list.")


def resolve_index_dir(directory: Path) -> Path:
    """The directory, or the previous index if a crash interrupted replacing it."""
    found = published(directory)
    if found != directory:
        log.warning(
            "Index %s was being replaced when a process died; loading the previous one.", directory
        )
    return found


# ----------------------------------------------------------------------- helpers
def save_documents(corpus: Corpus, path: Path) -> None:
    """Write ``corpus`` as BEIR-style JSONL that ``load_corpus`` reads back unchanged."""
    lines = (
        json.dumps({"_id": d, "title": t, "text": x}, ensure_ascii=False)
        for d, t, x in zip(corpus.doc_ids, corpus.titles, corpus.texts, strict=True)
    )
    atomic_write_text(path, "\n".join(lines) + "\n")


def save_training_pairs(pairs: list[tuple[str, str]], path: Path) -> None:
    """Write (query text, doc id) pairs as ``{"query", "doc_id"}`` JSON lines."""
    lines = (json.dumps({"query": q, "doc_id": d}, ensure_ascii=False) for q, d in pairs)
    atomic_write_text(path, "\n".join(lines) + "\n")


def save_training_log(points: list[dict[str, float]], path: Path) -> None:
    """Write the loss history (``TrainStats.history``), one JSON object a line."""
    atomic_write_text(path, "".join(json.dumps(point) + "\n" for point in points))


def load_training_log(path: Path) -> list[dict[str, float]]:
    """Read ``save_training_log`` output; a missing file (an older index) means no history."""
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_training_pairs(path: Path) -> list[tuple[str, str]]:
    """Read ``save_training_pairs`` output; a missing file means no training queries."""
    if not path.is_file():
        return []
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                pairs.append((str(record["query"]), str(record["doc_id"])))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise IndexLoadError(
                    f"{path} line {number} is not a training query ({exc})."
                ) from exc
    return pairs


def _query_examples(
    tokenizer,
    pairs: list[tuple[str, list[int]]],
    config,
    eos: int,
    task: str,
    repeats: int = 1,
) -> ExampleSet:
    """(query text, docid target) pairs as retrieval examples labelled ``task``."""
    if not pairs:
        return ExampleSet([], [], [])
    tokens = tokenizer([q for q, _ in pairs], add_special_tokens=False)["input_ids"]
    out = retrieval_examples(tokens, [t for _, t in pairs], config, eos, repeats)
    out.tasks = [task] * len(out)
    return out


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
    process of a distributed one) reads the same; ``docids.symbols`` become new tokens after the
    text vocabulary.
    """
    if config.model:
        # A pretrained T5 gets the copy head on top of its weights; another architecture
        # (BART, ...) trains without it: model_config describes only models built from scratch.
        model, offset = load_model(config.model, len(docids.symbols), takes_copy_head(config.model))
        tokenizer = load_tokenizer(config.model)
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
    model = build_model(config.model_config, offset, len(docids.symbols))
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


def _count_tasks(examples: ExampleSet) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in examples.tasks:
        counts[task] = counts.get(task, 0) + 1
    return counts


def _versions() -> dict[str, str]:
    import transformers

    return {
        "dsi": dsi.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
