"""A generative index: the one lifecycle of every identifier kind (:class:`IndexLifecycle`:
build, add, save, load) and the docid kinds' index (:class:`GenerativeIndex`: tokenizer + T5 +
docid map + trie), built from a corpus, saved as a directory.

The directory's format, manifest and atomic save are :mod:`dsi.index_format`'s; what an
addition (continual indexing, as in DSI++) checks, replays and records is :mod:`dsi.continual`'s.
A docid index adds ``docids.jsonl`` (doc id -> docid symbol indices, with ``docid_vocab.json``
and the scheme's data) and ``trie.marisa`` (the prefix trie over docid token sequences).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
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
from dsi.examples import (
    ExampleSet,
    count_tasks,
    indexing_examples,
    mix_examples,
    retrieval_examples,
)
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
            # Mapped: decoding touches the few pages of the prefixes it walks.
            "trie": PrefixTrie.load(directory / "trie.marisa", mmap=True),
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
    # JSON of lists: unambiguous where texts hold any separator character.
    record = {
        "tokenizer_texts": texts + queries,
        "documents": [list(row) for row in zip(corpus.doc_ids, texts, strict=True)],
        "query_pairs": [list(pair) for pair in pairs],
    }
    return hashlib.sha256(json.dumps(record, ensure_ascii=False).encode("utf-8")).hexdigest()


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
