"""N-gram identifiers (SEAL): the model generates substrings of documents, not docid symbols.

The same T5 and tokenizer as :class:`dsi.index.GenerativeIndex` learn to map queries and document
spans to other spans of the relevant document (``docid.ngram`` makes the pairs); targets are
plain text tokens, so no docid symbols are added to the vocabulary. Search decodes n-grams by
beam search constrained to the corpus (``trie.ngram_processor``) and ranks the documents that
contain them by BM25 over the n-grams weighted by their probability (``docid.ngram.bm25_score``)
or SEAL's intersective score (``docid.ngram.seal_score``), plus a BM25 over the stemmed words of
the n-grams (``docid.words``; ``SealOptions.word_weight``, ``word_weight_without_queries`` for a
model trained without queries).

Index directory (the same format as ``dsi.index``; ``manifest.json`` says ``docid_scheme:
"ngram"``): ``manifest.json``, ``config.json`` (``docids: "ngram"``; ``docid_options`` hold the
:class:`SealOptions`), ``model/``, ``ngram_index/`` (``trie.fmindex.NgramIndex`` files over the
tokenized ``title + " " + text`` of every document, separator = pad id 0), ``word_index/``
(``docid.words.WordIndex`` of the same texts; older indexes lack it), ``documents.jsonl``
and, if there were training queries, ``training_queries.jsonl``; ``query_generator/`` when the
index keeps a query generator (``IndexConfig.query_generator`` or ``pseudo_queries``), whose
generated queries are replayed by additions (DSI++'s generative memory).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput

from docid.ngram import (
    best_first,
    best_logprobs,
    bm25_score,
    salient_span_pairs,
    seal_score,
    span_stopwords,
    supervised_pairs,
    unsupervised_pairs,
)
from docid.words import DEFAULT_LANGUAGE, WordIndex, analyze
from dsi.config import DOCID_SETTINGS_ADDED_LATER, AddConfig, IndexConfig, TrainConfig
from dsi.data import Corpus, TrainingQueries, load_corpus
from dsi.decoding import (
    EMPTY_SLOT,
    ConstrainedRetriever,
    Hit,
    check_queries,
    constrained_generate,
)
from dsi.examples import ExampleSet, mix_examples, retrieval_examples
from dsi.index import (
    GENERATOR_DIR,
    TRAINING_LOG_FILE,
    TRAINING_QUERIES_FILE,
    IndexLoadError,
    add_entry,
    add_fingerprint,
    add_order,
    build_entry,
    build_fingerprint,
    check_new_documents,
    claim_work_dir,
    generative_memory,
    holds_work_dir,
    kept_generator,
    load_training_log,
    load_training_pairs,
    make_model,
    read_manifest,
    replay_doc_ids,
    resolve_index_dir,
    save_index,
    train_model,
    train_with_replay,
    verify_checksums,
)
from dsi.model import load_tokenizer, open_model
from dsi.pseudo_queries import QueryGenerator
from dsi.timing import stage
from trie.fmindex import NgramIndex
from trie.ngram_processor import NgramLogitsProcessor

log = logging.getLogger(__name__)

SCHEME = "ngram"
NGRAM_DIR = "ngram_index"
WORD_DIR = "word_index"
SCORINGS = ("bm25", "intersective")
# Feedback reads documents in windows as long as the longest the model was trained to copy from
# (docid.ngram.salient_span_pairs' source_words).
FEEDBACK_WINDOW_WORDS = 24


@dataclass
class SealOptions:
    """SEAL settings, read from ``IndexConfig.docid_options`` (unknown keys are refused)."""

    # Training data (docid.ngram.supervised_pairs / salient_span_pairs / unsupervised_pairs).
    spans_per_query: int = 3
    # Noisy window -> rare-word span inside it: teaches a model from scratch to copy. Without
    # training queries these pairs are all the model learns from, and fresh ones beat more epochs
    # over few (Cranfield dev nDCG@10, experiments/quality.py); with queries, many of them dilute
    # the query pairs (SciFact dev).
    salient_pairs_per_doc: int = 6
    salient_pairs_per_doc_without_queries: int = 120
    # ...but no more than this many in all (each holds ~1.5 KB while training), down to
    # salient_pairs_per_doc per document in a large corpus.
    max_salient_pairs: int = 1_000_000
    # When larger than the count above, each epoch draws that many copy pairs per document
    # afresh from a pool of this many per document (max_salient_pairs in all), instead of
    # repeating the same ones (SciFact dev nDCG@10 0.629 against 0.624, experiments/quality.py).
    salient_pool_per_doc: int = 60
    # Without training queries a pool (700 drawing 120 per epoch) did not beat the same 120
    # every epoch (Cranfield dev nDCG@10 0.251 against 0.249, test 0.246 against 0.265).
    salient_pool_per_doc_without_queries: int = 0
    salient_words: tuple[int, int] = (1, 4)
    word_dropout: float = 0.25
    rarity: float = 2.0
    # SEAL's span -> other span of the same document (a corpus language model, no copying).
    pairs_per_doc: int = 0
    source_words: tuple[int, int] = (10, 30)
    min_words: int = 3
    max_words: int = 10
    temperature: float = 1.0
    include_title: bool = True
    seed: int = 0
    # Decoding: generated n-grams have min_tokens..max_tokens tokens (targets are cut to max_tokens).
    min_tokens: int = 1
    max_tokens: int = 10
    # Also score the ``unigrams`` most likely first tokens of the decoder (SEAL's "best
    # unigrams"): one more decoder step, many more query terms than beams.
    unigrams: int = 100
    # Document scoring: "bm25" (docid.ngram.bm25_score) or SEAL's "intersective" score
    # (docid.ngram.seal_score). BM25 over the generated n-grams ranks better for a small model
    # trained from scratch (SciFact dev nDCG@10, experiments/quality.py).
    scoring: str = "bm25"
    gamma: float = 0.25
    k1: float = 1.2
    b: float = 0.75
    # SEAL's alpha is 2; a steeper 3 ranks better for a small model trained from scratch.
    alpha: float = 3.0
    beta: float = 0.8
    smoothing: float = 5.0
    # Both scores skip n-grams this frequent: listing their documents is costly, says little.
    max_occurrences: int = 1500
    # The stemmed words of the beams' n-grams also score documents, by BM25 over the corpus's
    # words (docid.words) times this weight, added to the score above (0 = off): a generated
    # "tumours" then finds "tumour" too (dev nDCG@10 SciFact 0.655 against 0.629, Cranfield
    # 0.284 against 0.249, the same models; experiments/quality.py).
    word_weight: float = 0.75
    # ...and so do the words begun by the decoder's best first tokens that start a word, this
    # many (among the ``unigrams``): the query's salient words, where beams spend themselves on
    # one word's variants ("antidepressants.", "antidepressants,", ...) (dev nDCG@10 SciFact
    # 0.681 against 0.655, Cranfield 0.288 against 0.284; test 0.645 and 0.298 with both
    # settings, against 0.629 and 0.265 without).
    word_unigrams: int = 10
    # Each such first token is completed to a whole word by greedy constrained decoding (to the
    # first token that starts another word): a first piece alone ("antidep") is no word of the
    # corpus (dev nDCG@10 SciFact 0.710 against 0.681, Cranfield 0.283 against 0.288).
    complete_words: bool = True
    # A model trained without queries has only learned to copy document spans: its n-grams are
    # the query's own phrases, whose words rank documents better than the phrases do, so they
    # weigh more (``for_search``; None: ``word_weight``). Dev nDCG@10 with 3 against 0.75:
    # Cranfield 0.387 and 0.381 against 0.371 and 0.344 (two seeds), SciFact learning from its
    # documents alone 0.690 against 0.690 (809 queries); with training queries 3 ranked SciFact
    # dev worse (0.704 against 0.715, the mean of two seeds), so those keep word_weight.
    word_weight_without_queries: float | None = 3.0
    # Generative pseudo-relevance feedback (0 documents = off): the model reads each of the
    # ``feedback_docs`` best documents of the first ranking in windows, as it read documents in
    # training, and the ``feedback_words`` words it generates most often there score documents
    # too (BM25 weighted by their share), scaled so that the best of them scores
    # ``feedback_weight`` times the first ranking's best. A model trained without queries
    # reads ``feedback_docs_without_queries`` (None: ``feedback_docs``): its first ranking is
    # the query's own words, and the words of its best documents add what the query lacks.
    # Chosen on dev by experiments/feedback.py.
    feedback_docs: int = 0
    feedback_docs_without_queries: int | None = 5
    feedback_words: int = 10
    feedback_weight: float = 0.25

    # Settings that only change how a trained model is searched, not how it is trained.
    DECODING: ClassVar[tuple[str, ...]] = (
        "min_tokens",
        "unigrams",
        "scoring",
        "gamma",
        "k1",
        "b",
        "alpha",
        "beta",
        "smoothing",
        "max_occurrences",
        "word_weight",
        "word_unigrams",
        "complete_words",
        "word_weight_without_queries",
        "feedback_docs",
        "feedback_docs_without_queries",
        "feedback_words",
        "feedback_weight",
    )

    @classmethod
    def from_config(cls, config: IndexConfig) -> SealOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config.docid_options) - names)
        if unknown:
            raise ValueError(
                f"docid_options has unknown n-gram settings {unknown}; known ones are "
                f"{sorted(names)}."
            )
        options = dict(config.docid_options)
        for key in ("source_words", "salient_words"):
            if key in options:  # JSON gives a list back
                options[key] = tuple(options[key])
        made = cls(**options)
        if made.scoring not in SCORINGS:
            raise ValueError(
                f"docid_options scoring must be one of {list(SCORINGS)}, got {made.scoring!r}."
            )
        docs = (made.feedback_docs, made.feedback_docs_without_queries or 0)
        if min(docs) < 0 or made.feedback_words < 1 or made.feedback_weight < 0:
            raise ValueError(
                "feedback_docs(_without_queries) and feedback_weight must be at least 0 and "
                f"feedback_words at least 1, got {docs}, {made.feedback_weight} and "
                f"{made.feedback_words}."
            )
        if not 1 <= made.min_tokens <= made.max_tokens:
            raise ValueError(
                f"n-gram lengths must satisfy 1 <= min_tokens <= max_tokens, got "
                f"{made.min_tokens}..{made.max_tokens}."
            )
        return made

    def for_search(self, with_queries: bool) -> SealOptions:
        """These options as a model trained with (or without) training queries is searched:
        without them ``word_weight`` and ``feedback_docs`` are ``word_weight_without_queries``
        and ``feedback_docs_without_queries`` (where set)."""
        if with_queries:
            return self
        without = {
            "word_weight": self.word_weight_without_queries,
            "feedback_docs": self.feedback_docs_without_queries,
        }
        return dataclasses.replace(self, **{k: v for k, v in without.items() if v is not None})

    def salient_pairs_for(self, num_docs: int, with_queries: bool) -> int:
        """Copy pairs per document when ``num_docs`` documents are indexed with or without
        training queries."""
        if with_queries:
            return self.salient_pairs_per_doc
        affordable = self._affordable_per_doc(num_docs)
        return min(
            self.salient_pairs_per_doc_without_queries, max(self.salient_pairs_per_doc, affordable)
        )

    def salient_pool_for(self, num_docs: int, with_queries: bool) -> int:
        """Copy pairs per document that each epoch's are drawn from afresh, or 0 when every
        epoch repeats the same ones."""
        wanted = (
            self.salient_pool_per_doc if with_queries else self.salient_pool_per_doc_without_queries
        )
        pooled = min(wanted, self._affordable_per_doc(num_docs))
        return pooled if pooled > self.salient_pairs_for(num_docs, with_queries) else 0

    def _affordable_per_doc(self, num_docs: int) -> int:
        return self.max_salient_pairs // max(1, num_docs)

    def rank(
        self,
        ngrams: list[tuple[tuple[int, ...], float]],
        index: NgramIndex,
        k: int | None,
        words: Sequence[str] = (),
        word_index: WordIndex | None = None,
    ) -> list[tuple[int, float]]:
        """``(doc_index, score)`` of the documents containing ``ngrams`` (or, when
        ``word_weight`` and ``word_index`` are set, any of the analysed ``words``), best first."""
        use_words = bool(self.word_weight and words and word_index is not None)
        cut = None if use_words else k
        if self.scoring == "bm25":
            ranked = bm25_score(
                ngrams,
                index,
                gamma=self.gamma,
                k1=self.k1,
                b=self.b,
                max_occurrences=self.max_occurrences,
                k=cut,
            )
        else:
            ranked = seal_score(
                ngrams,
                index,
                alpha=self.alpha,
                beta=self.beta,
                smoothing=self.smoothing,
                max_occurrences=self.max_occurrences,
                k=cut,
            )
        if not use_words:
            return ranked
        word_scores = self.word_weight * word_index.bm25(words, self.k1, self.b)
        scores = {int(doc): float(word_scores[doc]) for doc in np.flatnonzero(word_scores)}
        for doc, score in ranked:
            scores[doc] = scores.get(doc, 0.0) + score
        return best_first(list(scores.items()), k)

    def add_feedback(
        self,
        ranked: list[tuple[int, float]],
        shares: Sequence[Mapping[str, float]],
        word_index: WordIndex,
        k: int | None,
    ) -> list[tuple[int, float]]:
        """``ranked`` (a full first ranking, best first) plus the BM25 of the
        ``feedback_words`` words with the largest summed share in ``shares`` (one mapping of
        word -> share per document read), scaled so that its best document gets
        ``feedback_weight`` times ``ranked``'s best score; best first, cut to ``k``."""
        weights: dict[str, float] = {}
        for document in shares:
            for word, share in document.items():
                weights[word] = weights.get(word, 0.0) + share
        heaviest = sorted(weights.items(), key=lambda item: (-item[1], item[0]))
        extra = word_index.weighted_bm25(dict(heaviest[: self.feedback_words]), self.k1, self.b)
        scores = dict(ranked)
        if ranked and extra.max() > 0:
            scale = self.feedback_weight * ranked[0][1] / extra.max()
            for doc in np.flatnonzero(extra).tolist():
                scores[doc] = scores.get(doc, 0.0) + scale * float(extra[doc])
        return best_first(list(scores.items()), k)


def split_decoding(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """SEAL ``docid_options`` apart: those a trained model depends on, and the decoding-only
    ones (``SealOptions.DECODING``)."""
    decoding = {k: v for k, v in options.items() if k in SealOptions.DECODING}
    return {k: v for k, v in options.items() if k not in decoding}, decoding


def training_settings(config: IndexConfig) -> IndexConfig:
    """``config`` without its decoding-only SEAL settings: what a trained model depends on, so
    that a changed decoding setting does not retrain it."""
    return dataclasses.replace(config, docid_options=split_decoding(config.docid_options)[0])


def resolved_config(config: IndexConfig) -> IndexConfig:
    """``config`` with its ``docid_options`` naming every SEAL setting (defaults filled in), as
    an n-gram index saves it: a later change of defaults leaves such a config alone."""
    options = SealOptions.from_config(config)
    return dataclasses.replace(config, docid_options=dataclasses.asdict(options))


class _NoSymbols:
    """What ``dsi.index.make_model`` reads of a docid map: n-gram targets add no symbols."""

    symbols: list[str] = []


@dataclass
class NgramGenerativeIndex:
    """Tokenizer + T5 + n-gram index over the tokenized corpus: everything SEAL search needs."""

    config: IndexConfig
    tokenizer: Any
    model: torch.nn.Module
    ngrams: NgramIndex
    corpus: Corpus
    lineage: list[dict[str, Any]] = field(default_factory=list)
    training_pairs: list[tuple[str, str]] = field(default_factory=list)
    query_generator: QueryGenerator | None = None
    word_index: WordIndex | None = None
    # The loss history of the build's training (``TrainStats.history``): training_log.jsonl.
    training_log: list[dict[str, float]] = field(default_factory=list)

    @property
    def num_docs(self) -> int:
        return len(self.corpus.doc_ids)

    @property
    def words(self) -> WordIndex:
        """The stemmed words of the corpus (built on first use when the index has none)."""
        if self.word_index is None or self.word_index.num_docs != self.num_docs:
            self.word_index = WordIndex.build(self.corpus.full_texts(), self.config.language)
        return self.word_index

    @property
    def options(self) -> SealOptions:
        return SealOptions.from_config(self.config)

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
        monitor: Callable[[NgramGenerativeIndex, float], None] | None = None,
        monitor_minutes: float = 5.0,
    ) -> NgramGenerativeIndex:
        """Train the model on SEAL's span pairs (and query pairs) and index the corpus n-grams.

        ``work_dir`` keeps the tokenizer and training checkpoints, so an interrupted build with
        the same corpus and config resumes. ``monitor`` as in ``GenerativeIndex.build``.
        """
        config = config or IndexConfig(docids=SCHEME)
        if config.docids != SCHEME:
            raise ValueError(f"NgramGenerativeIndex needs docids 'ngram', got {config.docids!r}.")
        if len(corpus.doc_ids) == 0:
            raise ValueError("The corpus is empty: there is nothing to index.")
        config = resolved_config(config)
        options = SealOptions.from_config(config)
        started = time.monotonic()
        if work_dir is not None:
            work_dir = Path(work_dir)
            claim_work_dir(work_dir, ngram_fingerprint(corpus, config, training_queries))
        texts = corpus.full_texts()
        timings: dict[str, float] = {}
        with stage("tokenizer", timings):
            tokenizer, model, _ = make_model(
                config, texts, training_queries, _NoSymbols(), work_dir
            )
        eos = model.config.eos_token_id

        position = corpus.positions()
        pairs = [] if training_queries is None else training_queries.pairs(set(position))
        copies = options.salient_pairs_for(len(corpus.doc_ids), bool(pairs))
        pooled = options.salient_pool_for(len(corpus.doc_ids), bool(pairs))
        pool, per_epoch = ExampleSet([], [], []), 0
        with stage("examples", timings):
            if pooled:
                pool = seal_examples(
                    *(tokenizer, corpus, [], config.train, options, eos),
                    salient_pairs_per_doc=pooled,
                    language=config.language,
                )
                per_epoch, copies = copies * len(corpus.doc_ids), 0
            examples = seal_examples(
                *(tokenizer, corpus, pairs, config.train, options, eos),
                salient_pairs_per_doc=copies,
                language=config.language,
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
        with stage("examples", timings):
            if generated:
                pseudo = [
                    (q, d) for d, qs in zip(corpus.doc_ids, generated, strict=True) for q in qs
                ]
                examples.extend(
                    query_examples(
                        tokenizer,
                        corpus,
                        pseudo,
                        config.train,
                        options,
                        eos,
                        options.seed,
                        "pseudo",
                        config.language,
                    )
                )
        # The identifiers of this kind are the corpus's n-grams (and its words).
        with stage("identifiers", timings):
            ngrams = build_ngram_index(tokenizer, corpus, separator=model.config.pad_token_id)
            word_index = WordIndex.build(texts, config.language)

        def snapshot(live_model: torch.nn.Module) -> NgramGenerativeIndex:
            return cls(config, tokenizer, live_model, ngrams, corpus, [], pairs, None, word_index)

        with stage("training", timings):
            stats = train_model(
                model,
                examples,
                config,
                len(corpus.doc_ids),
                work_dir,
                progress_bar,
                monitor=None if monitor is None else lambda m, s: monitor(snapshot(m), s),
                monitor_minutes=monitor_minutes,
                pool=pool,
                pool_per_epoch=per_epoch,
            )
        model = model.cpu().eval()
        if len(pool):
            examples.extend(pool)
        entry = build_entry(
            corpus,
            training_queries,
            examples,
            stats,
            generator,
            started,
            corpus_tokens=ngrams.total_tokens,
            stage_seconds=timings,
        )
        lineage = [entry]
        return cls(
            config,
            tokenizer,
            model,
            ngrams,
            corpus,
            lineage,
            pairs,
            generator,
            word_index,
            training_log=stats.history,
        )

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

        N-grams need no new identifiers: the new documents join the n-gram index (rebuilt over
        the whole corpus) and training continues on their span pairs (and training queries),
        mixed with replay of old documents: queries generated for them -> their spans
        (``replay="generative"``, DSI++'s generative memory, mixed with their real training
        queries; a query generator is trained first if the index keeps none), their span pairs
        (``"documents"``) or their training queries (``"queries"``). ``work_dir`` keeps
        checkpoints and generated queries so that an interrupted addition resumes. If training
        fails, discard this object; a saved index is never touched.
        """
        config = config or AddConfig()
        started = time.monotonic()
        check_new_documents(corpus, set(self.corpus.doc_ids))
        if config.replay == "queries" and not self.training_pairs:
            raise ValueError(
                "Replay of training queries needs the queries of the indexed documents, and this "
                "index has none; use replay 'documents'."
            )
        if work_dir is not None:
            work_dir = Path(work_dir)
            fingerprint = add_fingerprint(
                self.lineage, self.num_docs, corpus, training_queries, config
            )
            claim_work_dir(work_dir, fingerprint)
        train_config = config.train_config(self.config.train)
        options = self.options
        eos = self.model.config.eos_token_id
        pairs = [] if training_queries is None else training_queries.pairs(set(corpus.doc_ids))
        # A seed of its own per addition, so new documents' spans are not drawn like old ones'.
        order = add_order(self.lineage)
        examples = seal_examples(
            *(self.tokenizer, corpus, pairs, train_config, options, eos),
            seed=config.seed + order,
            language=self.config.language,
        )
        pool, generator_trained = ExampleSet([], [], []), False
        old = replay_doc_ids(self.corpus, config)
        if config.replay == "documents":
            # A replay pool, not the documents' only lesson: the smaller count will do.
            pool = seal_examples(
                self.tokenizer,
                self.corpus.subset(old),
                [],
                train_config,
                options,
                eos,
                salient_pairs_per_doc=options.salient_pairs_per_doc,
                language=self.config.language,
            )
            pool.tasks = ["replay-span"] * len(pool)
        elif config.replay in ("queries", "generative"):

            def replay_examples(replayed: list[tuple[str, str]], task: str) -> ExampleSet:
                return query_examples(
                    self.tokenizer,
                    self.corpus,
                    replayed,
                    train_config,
                    options,
                    eos,
                    options.seed,
                    task,
                    self.config.language,
                )

            wanted = set(old)
            real = [(q, d) for q, d in self.training_pairs if d in wanted]
            pool = replay_examples(real, "replay-query")
            if config.replay == "generative":
                generated, generator_trained = generative_memory(
                    self, old, config, work_dir, progress_bar
                )
                pool = mix_examples(
                    replay_examples(generated, "replay-generated"), pool, config.real_query_share
                )
        stats, per_epoch = train_with_replay(
            self.model, examples, pool, config, train_config, work_dir, progress_bar
        )
        self.model = self.model.cpu().eval()
        merged = Corpus.concat([self.corpus, corpus])
        ngrams = build_ngram_index(self.tokenizer, merged, separator=self.model.config.pad_token_id)
        word_index = WordIndex.build(merged.full_texts(), self.config.language)
        # Commit: nothing below can fail halfway.
        self.corpus, self.ngrams, self.word_index = merged, ngrams, word_index
        self.training_pairs = self.training_pairs + pairs
        entry = add_entry(
            self.lineage,
            corpus,
            self.num_docs,
            pairs,
            config,
            examples,
            (pool, per_epoch, generator_trained),
            stats,
            started,
            corpus_tokens=ngrams.total_tokens,
        )
        self.lineage.append(entry)
        return entry

    # ------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write the index to ``directory``; an existing index there is replaced only when complete.

        Anything there but an index or an empty folder is refused before any writing
        (:class:`docid.guard.PathRefused`), and so is a directory another process is writing
        (:class:`docid.guard.WriterBusy`): the directory's writer lock is held meanwhile.
        """

        def write_parts(stage: Path) -> None:
            self.ngrams.save(stage / NGRAM_DIR)
            self.words.save(stage / WORD_DIR)

        return save_index(
            self,
            Path(directory),
            write_parts,
            num_docs=self.num_docs,
            docid_scheme=SCHEME,
            # No docid symbols follow the text vocabulary.
            docid_offset=int(self.model.config.vocab_size),
            corpus_tokens=self.ngrams.total_tokens,
        )

    @classmethod
    def load(cls, directory: str | Path, verify: bool = True) -> NgramGenerativeIndex:
        """Load an n-gram index directory, checking its format version, files and checksums."""
        directory = resolve_index_dir(Path(directory))
        manifest = read_manifest(directory)
        if manifest.get("docid_scheme") != SCHEME:
            raise IndexLoadError(
                f"Index {directory} uses {manifest.get('docid_scheme')!r} docids, not n-grams."
            )
        if verify:
            verify_checksums(directory, manifest)
        try:
            config = _settings_of_older_indexes(IndexConfig.load(directory / "config.json"))
            SealOptions.from_config(config)
            tokenizer = load_tokenizer(directory / "model")
            model = open_model(directory / "model", use_safetensors=True).eval()
            ngrams = NgramIndex.load(directory / NGRAM_DIR)
            corpus = load_corpus(directory / "documents.jsonl")
            pairs = load_training_pairs(directory / TRAINING_QUERIES_FILE)
            generator = None
            if (directory / GENERATOR_DIR).is_dir():
                generator = QueryGenerator.load(directory / GENERATOR_DIR, tokenizer)
            # Indexes saved before word scoring have none; ``words`` builds it when needed.
            word_index = None
            if (directory / WORD_DIR).is_dir():
                word_index = WordIndex.load(directory / WORD_DIR)
            training_log = load_training_log(directory / TRAINING_LOG_FILE)
        except IndexLoadError:
            raise
        except Exception as exc:  # one sentence naming the index, whatever broke underneath
            raise IndexLoadError(f"Index {directory} cannot be loaded: {exc}") from exc
        if config.docids != SCHEME:
            raise IndexLoadError(
                f"Index {directory} is inconsistent: its manifest says n-gram docids but its "
                f"config says {config.docids!r}."
            )
        if not manifest["num_docs"] == ngrams.num_docs == len(corpus.doc_ids):
            raise IndexLoadError(
                f"Index {directory} is inconsistent: manifest says {manifest['num_docs']} documents, "
                f"the n-gram index holds {ngrams.num_docs} and documents.jsonl "
                f"{len(corpus.doc_ids)}."
            )
        if word_index is not None and word_index.num_docs != len(corpus.doc_ids):
            raise IndexLoadError(
                f"Index {directory} is inconsistent: its word index holds {word_index.num_docs} "
                f"documents and documents.jsonl {len(corpus.doc_ids)}."
            )
        lineage = manifest["lineage"]
        return cls(
            config,
            tokenizer,
            model,
            ngrams,
            corpus,
            lineage,
            pairs,
            generator,
            word_index,
            training_log,
        )


def _settings_of_older_indexes(config: IndexConfig) -> IndexConfig:
    """Indexes saved before their config named every SEAL setting made as many copy pairs per
    document without training queries as with them, and the same ones every epoch; those saved
    before ``salient_pool_per_doc_without_queries`` drew no pool without training queries;
    those saved before ``word_weight`` did not score words, those saved before
    ``complete_words`` scored the words of first tokens as they were, and those saved before
    ``word_weight_without_queries`` weighed words the same without training queries; none had
    feedback."""
    options = config.docid_options
    older: dict[str, float | None] = {
        "salient_pool_per_doc_without_queries": 0,
        "word_weight": 0.0,
        "complete_words": False,
        **DOCID_SETTINGS_ADDED_LATER,
    }
    if "salient_pairs_per_doc_without_queries" not in options:
        count = options.get("salient_pairs_per_doc", SealOptions.salient_pairs_per_doc)
        older.update(salient_pairs_per_doc_without_queries=count, salient_pool_per_doc=0)
    return dataclasses.replace(config, docid_options={**older, **options})


def build_ngram_index(tokenizer: Any, corpus: Corpus, separator: int = 0) -> NgramIndex:
    """The n-gram index over ``tokenize(title + " " + text)`` of every document (no EOS)."""
    doc_tokens = tokenizer(corpus.full_texts(), add_special_tokens=False)["input_ids"]
    return NgramIndex.build(doc_tokens, separator=separator)


def ngram_fingerprint(corpus: Corpus, config: IndexConfig, training: TrainingQueries | None) -> str:
    """The work directory's fingerprint of an n-gram build: only the settings that shape its
    training count (``training_settings``), so a decoding setting alone reuses the checkpoints.
    ``prepare_work_dir`` and ``build`` must agree on it, or every process moves the prepared
    work directory aside."""
    return build_fingerprint(corpus, training_settings(resolved_config(config)), training)


def prepare_work_dir(state: Any, corpus: Corpus, config: IndexConfig, training, work_dir) -> None:
    """Train the tokenizer in the main process first so every process reads the same one."""
    with state.main_process_first():
        claim_work_dir(work_dir, ngram_fingerprint(corpus, config, training))
        make_model(config, corpus.full_texts(), training, _NoSymbols(), work_dir)


def seal_examples(
    tokenizer: Any,
    corpus: Corpus,
    pairs: Sequence[tuple[str, str]],
    train_config: TrainConfig,
    options: SealOptions,
    eos: int,
    seed: int | None = None,
    salient_pairs_per_doc: int | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> ExampleSet:
    """Training examples for ``corpus``: span pairs of its documents and, for ``pairs`` of
    (query, doc id in ``corpus``), query -> title / overlapping spans of the document.

    ``salient_pairs_per_doc`` defaults to ``options.salient_pairs_for`` indexing with queries
    when ``pairs`` has any, without them otherwise."""
    seed = options.seed if seed is None else seed
    if salient_pairs_per_doc is None:
        salient_pairs_per_doc = options.salient_pairs_for(len(corpus.doc_ids), bool(pairs))
    span_pairs = salient_span_pairs(
        corpus.full_texts(),
        pairs_per_doc=salient_pairs_per_doc,
        min_words=options.salient_words[0],
        max_words=options.salient_words[1],
        word_dropout=options.word_dropout,
        rarity=options.rarity,
        seed=seed,
        stopwords=span_stopwords(language),
    )
    if options.pairs_per_doc:
        span_pairs += unsupervised_pairs(
            zip(corpus.titles, corpus.texts, strict=True),
            pairs_per_doc=options.pairs_per_doc,
            source_words=options.source_words,
            min_words=options.min_words,
            max_words=options.max_words,
            include_title=options.include_title,
            seed=seed,
        )
    examples = _text_examples(
        tokenizer, span_pairs, train_config, options, eos, repeats=1, task="seal-span"
    )
    examples.extend(
        query_examples(
            tokenizer, corpus, pairs, train_config, options, eos, seed, "seal-query", language
        )
    )
    return examples


def query_examples(
    tokenizer: Any,
    corpus: Corpus,
    pairs: Sequence[tuple[str, str]],
    train_config: TrainConfig,
    options: SealOptions,
    eos: int,
    seed: int,
    task: str,
    language: str = DEFAULT_LANGUAGE,
) -> ExampleSet:
    """(query -> title and spans of its relevant document) examples, ``query_repeats`` times."""
    if not pairs:
        return ExampleSet([], [], [])
    position = corpus.positions()
    query_pairs = supervised_pairs(
        [(q, corpus.titles[position[d]], corpus.texts[position[d]]) for q, d in pairs],
        spans_per_query=options.spans_per_query,
        min_words=options.min_words,
        max_words=options.max_words,
        temperature=options.temperature,
        include_title=options.include_title,
        seed=seed,
        stopwords=span_stopwords(language),
    )
    return _text_examples(
        tokenizer, query_pairs, train_config, options, eos, train_config.query_repeats, task
    )


def _text_examples(
    tokenizer: Any,
    pairs: list[tuple[str, str]],
    train_config: TrainConfig,
    options: SealOptions,
    eos: int,
    repeats: int,
    task: str,
) -> ExampleSet:
    """(source text, target text) pairs as examples; targets are cut to ``max_tokens`` + EOS."""
    if not pairs:
        return ExampleSet([], [], [])
    sources = tokenizer([s for s, _ in pairs], add_special_tokens=False)["input_ids"]
    targets = tokenizer([t for _, t in pairs], add_special_tokens=False)["input_ids"]
    # A cut n-gram is still a prefix of a corpus n-gram, so decoding can reach it.
    targets = [list(t[: options.max_tokens]) + [eos] for t in targets]
    out = retrieval_examples(sources, targets, train_config, eos, repeats)
    out.tasks = [task] * len(out)
    return out


# --------------------------------------------------------------------------- search
Scored = tuple[tuple[int, ...], float]  # an n-gram's token ids and its summed log-probability


class Generation(NamedTuple):
    """What the model generates for one query."""

    beams: list[Scored]  # the beams' n-grams
    unigrams: list[Scored]  # the ``unigrams`` most likely first tokens
    # The ``word_unigrams`` best of those that start a word, each completed to a whole word
    # when ``complete_words`` is set.
    words: list[Scored]


class NgramRetriever(ConstrainedRetriever):
    """Searches an :class:`NgramGenerativeIndex`: decode corpus n-grams, then score documents."""

    def __init__(
        self,
        index: NgramGenerativeIndex,
        device: str | torch.device | None = None,
        num_beams: int | None = None,
    ) -> None:
        self.options = index.options.for_search(with_queries=bool(index.training_pairs))
        # SEAL ranks n-grams by their summed token log-probabilities: no length penalty.
        super().__init__(index, device, num_beams, length_penalty=0.0)
        pieces = index.tokenizer.convert_ids_to_tokens(list(range(len(index.tokenizer))))
        self._word_starts = {i for i, piece in enumerate(pieces) if piece.startswith("\u2581")}
        # Where completing a word stops: a token that starts the next word, or EOS.
        vocab = self.model.config.vocab_size
        self._word_ends = torch.zeros(vocab, dtype=torch.bool, device=self.device)
        self._word_ends[[t for t in self._word_starts if t < vocab] + [self._eos]] = True
        # Per beam count, per document index: generated_words_of's result.
        self._generated_words: dict[int, dict[int, dict[str, float]]] = {}

    def _make_processors(self) -> None:
        cfg = self.model.config
        self._processor = NgramLogitsProcessor(
            self.index.ngrams,
            decoder_start_token_id=cfg.decoder_start_token_id,
            eos_token_id=cfg.eos_token_id,
            pad_token_id=cfg.pad_token_id,
            min_tokens=self.options.min_tokens,
        )

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None, **kwargs) -> NgramRetriever:
        return cls(NgramGenerativeIndex.load(directory), device=device, **kwargs)

    @property
    def num_docs(self) -> int:
        return self.index.num_docs

    def search(
        self,
        queries: Sequence[str],
        k: int = 10,
        batch_size: int = 32,
        num_beams: int | None = None,
    ) -> list[list[Hit]]:
        """For each query, up to ``k`` documents containing the generated n-grams, best first.

        ``num_beams`` n-grams are generated per query; unlike docid search it need not reach
        ``k``, since one n-gram can point to many documents. Documents are ranked by
        ``SealOptions.scoring`` plus ``word_weight`` times the BM25 of the words of the beams'
        n-grams and of the words the best unigrams begin (:meth:`query_words`), plus, with
        ``feedback_docs``, the BM25 of the words the model generates reading the best of those
        documents (:meth:`generated_words_of`); if fewer than ``k``
        score above 0 (e.g. only n-grams more frequent than ``max_occurrences``, or SEAL's score
        with a model that prefers frequent n-grams no more than their corpus frequency
        predicts), documents containing the best generated n-grams follow, scored by that
        n-gram's log-probability (negative, so below the rest). An empty or whitespace-only
        query raises ``ValueError`` (:func:`dsi.decoding.check_queries`).
        """
        check_queries(queries)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        generated = self.generate(queries, batch_size, num_beams)
        return self.rank_generations(generated, k, batch_size, num_beams)

    def rank_generations(
        self,
        generated: Sequence[Generation],
        k: int = 10,
        batch_size: int = 32,
        num_beams: int | None = None,
    ) -> list[list[Hit]]:
        """:meth:`search`'s ranking of what :meth:`generate` generated for the queries (with
        feedback, the model generates for the best documents too)."""
        scores_words = bool(self.options.word_weight)
        words = self.query_words(generated) if scores_words else [[] for _ in generated]
        word_index = self.index.words if scores_words else None
        feedback = self.options.feedback_docs > 0 and self.options.feedback_weight > 0
        ranked_all = [
            self.options.rank(
                generation.beams + generation.unigrams,
                self.index.ngrams,
                None if feedback else k,
                query_words,
                word_index,
            )
            for generation, query_words in zip(generated, words, strict=True)
        ]
        if feedback:
            ranked_all = self._with_feedback(ranked_all, k, batch_size, num_beams)
        doc_ids = self.index.corpus.doc_ids
        results = []
        for generation, ranked in zip(generated, ranked_all, strict=True):
            if len(ranked) < k:
                ngrams = generation.beams + generation.unigrams
                ranked += self._backfill(ngrams, {doc for doc, _ in ranked}, k - len(ranked))
            results.append([Hit(doc_ids[doc], float(score)) for doc, score in ranked])
        return results

    def _with_feedback(
        self,
        rankings: list[list[tuple[int, float]]],
        k: int,
        batch_size: int,
        num_beams: int | None,
    ) -> list[list[tuple[int, float]]]:
        """Each full first ranking plus the BM25 of the words generated from its best
        documents (``SealOptions.feedback_docs``), cut to ``k``."""
        options = self.options
        best_docs = [[doc for doc, _ in ranked[: options.feedback_docs]] for ranked in rankings]
        shares = self.generated_words_of(
            sorted({d for docs in best_docs for d in docs}), batch_size, num_beams
        )
        return [
            options.add_feedback(ranked, [shares[doc] for doc in docs], self.index.words, k)
            for ranked, docs in zip(rankings, best_docs, strict=True)
        ]

    def generated_words_of(
        self, docs: Sequence[int], batch_size: int = 32, num_beams: int | None = None
    ) -> dict[int, dict[str, float]]:
        """Per document (by index), the analysed words the model generates reading it in
        windows of ``FEEDBACK_WINDOW_WORDS`` words, each with its share of them (a word counts
        once per window); cached, as the model does not change under a retriever."""
        beams = num_beams or self.num_beams
        cache = self._generated_words.setdefault(beams, {})
        missing = [doc for doc in dict.fromkeys(docs) if doc not in cache]
        if missing:
            corpus = self.index.corpus
            windows, owners = [], []
            for doc in missing:
                # Title and text, as the model was trained on them (Corpus.full_texts, one document).
                words = f"{corpus.titles[doc]} {corpus.texts[doc]}".split()
                for start in range(0, max(len(words), 1), FEEDBACK_WINDOW_WORDS):
                    windows.append(" ".join(words[start : start + FEEDBACK_WINDOW_WORDS]))
                    owners.append(doc)
            generated = self.generate(windows, batch_size, beams)
            counts: dict[int, dict[str, int]] = {doc: {} for doc in missing}
            for doc, words in zip(owners, self.query_words(generated), strict=True):
                for word in set(words):
                    counts[doc][word] = counts[doc].get(word, 0) + 1
            for doc, counted in counts.items():
                total = sum(counted.values()) or 1
                cache[doc] = {word: n / total for word, n in counted.items()}
        return {doc: cache[doc] for doc in docs}

    def _backfill(
        self, ngrams: list[tuple[tuple[int, ...], float]], taken: set[int], need: int
    ) -> list[tuple[int, float]]:
        """Up to ``need`` more documents, from the n-grams in decreasing log-probability."""
        best = best_logprobs(ngrams)
        out: list[tuple[int, float]] = []
        index = self.index.ngrams
        for ngram, logprob in sorted(best.items(), key=lambda item: (-item[1], item[0])):
            # Listing the documents of very frequent n-grams is costly and says little.
            if index.count(ngram) > self.options.max_occurrences:
                continue
            for doc in index.documents(ngram).tolist():
                if doc not in taken:
                    taken.add(doc)
                    out.append((doc, logprob))
                    if len(out) == need:
                        return out
        return out

    def generate_ngrams(
        self, queries: Sequence[str], batch_size: int = 32, num_beams: int | None = None
    ) -> list[list[Scored]]:
        """Per query, the decoded n-grams (token ids, no EOS) with their summed log-probs: the
        beams' first, then the ``unigrams`` best first tokens."""
        generated = self.generate(queries, batch_size, num_beams)
        return [g.beams + g.unigrams for g in generated]

    def query_words(self, generated: Sequence[Generation]) -> list[list[str]]:
        """Per query's :class:`Generation`, the analysed words (``docid.words.analyze``) of its
        beams' n-grams and of its completed words."""
        decode = self.index.tokenizer.decode
        texts = [" ".join(decode(list(ngram)) for ngram, _ in g.beams + g.words) for g in generated]
        return analyze(texts, language=self.index.config.language)

    def generate(
        self, queries: Sequence[str], batch_size: int = 32, num_beams: int | None = None
    ) -> list[Generation]:
        """Per query, its beams' n-grams, best first tokens and completed words."""
        if isinstance(queries, str):
            raise TypeError("search() takes a list of queries; wrap a single query in a list.")
        bad = [i for i, q in enumerate(queries) if not isinstance(q, str)]
        if bad:
            raise TypeError(f"Query {bad[0]} is a {type(queries[bad[0]]).__name__}, not a string.")
        beams = num_beams or self.num_beams
        out = []
        for start in range(0, len(queries), batch_size):
            out += self._generate_batch(list(queries[start : start + batch_size]), beams)
        return out

    @torch.inference_mode()
    def _generate_batch(self, queries: list[str], beams: int) -> list[Generation]:
        enc = self.index.tokenizer(
            queries,
            max_length=self.index.config.train.max_source_length,
            truncation=True,
            padding=True,
            return_tensors="pt",
        ).to(self.device)
        encoded = self.model.get_encoder()(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], return_dict=True
        )
        mask = enc["attention_mask"]
        sequences, scores = constrained_generate(
            self.model,
            # generate() repeats the encoder states for the beams inside the object it is given.
            {"encoder_outputs": _rows(encoded), "attention_mask": mask},
            beams,
            self.options.max_tokens + 1,
            self._processor,
            0.0,
        )
        unigrams = (
            self._best_unigrams(encoded, mask) if self.options.unigrams else [[]] * len(queries)
        )
        words = self._word_starts_of(unigrams)
        if self.options.complete_words:
            words = self._complete_words(encoded, mask, words)
        results = []
        for row in range(len(queries)):
            ngrams = []
            for j in range(row * beams, (row + 1) * beams):
                score = scores[j]
                if not math.isfinite(score) or score <= EMPTY_SLOT:
                    continue  # fewer n-grams than beams: transformers fills the slot
                tokens = sequences[j]
                if self._eos in tokens:
                    tokens = tokens[: tokens.index(self._eos)]
                # An n-gram that ran to max_tokens has no EOS; pads only follow an EOS.
                ngram = tuple(t for t in tokens if t != self._pad)
                if ngram:
                    ngrams.append((ngram, score))
            results.append(Generation(ngrams, unigrams[row], words[row]))
        return results

    def _best_unigrams(self, encoded: BaseModelOutput, mask: torch.Tensor) -> list[list[Scored]]:
        """Per query, the ``unigrams`` corpus tokens most likely as the first decoded token."""
        start = torch.full(
            (mask.shape[0], 1), self.model.config.decoder_start_token_id, device=self.device
        )
        logits = self.model(
            encoder_outputs=encoded, attention_mask=mask, decoder_input_ids=start
        ).logits[:, 0]
        logits = logits.float()
        allowed = torch.as_tensor(self._processor.allowed(()), device=self.device)
        allowed = allowed[(allowed != self._eos) & (allowed < logits.shape[-1])]
        logprobs = logits.log_softmax(dim=-1)[:, allowed]
        top = logprobs.topk(min(self.options.unigrams, len(allowed)), dim=-1)
        ids = allowed[top.indices].tolist()
        return [
            [((t,), lp) for t, lp in zip(row_ids, row_lps, strict=True)]
            for row_ids, row_lps in zip(ids, top.values.tolist(), strict=True)
        ]

    def _word_starts_of(self, unigrams: list[list[Scored]]) -> list[list[Scored]]:
        """Per query, the ``word_unigrams`` best of its unigrams that start a word."""
        return [
            [u for u in row if u[0][0] in self._word_starts][: self.options.word_unigrams]
            for row in unigrams
        ]

    def _complete_words(
        self, encoded: BaseModelOutput, mask: torch.Tensor, firsts: list[list[Scored]]
    ) -> list[list[Scored]]:
        """Each first token extended by greedy constrained decoding, all queries' at once, until
        the best next token starts another word or ends the n-gram (or ``max_tokens``)."""
        owners = [row for row, tokens in enumerate(firsts) for _ in tokens]
        if not owners:
            return [[] for _ in firsts]
        select = torch.as_tensor(owners, device=self.device)
        encoded, attention = _rows(encoded, select), mask[select]
        words = [list(ngram) for row in firsts for ngram, _ in row]
        logprobs = [logprob for row in firsts for _, logprob in row]
        start = self.model.config.decoder_start_token_id
        live = list(range(len(words)))
        # Live rows all grow by one token per step, so they stay of one length.
        for _ in range(self.options.max_tokens - 1):
            if not live:
                break
            rows = torch.as_tensor(live, device=self.device)
            decoder_ids = torch.tensor([[start, *words[i]] for i in live], device=self.device)
            logits = self.model(
                encoder_outputs=_rows(encoded, rows),
                attention_mask=attention[rows],
                decoder_input_ids=decoder_ids,
            ).logits[:, -1]
            logits = logits.float()
            step = self._processor(decoder_ids, logits.log_softmax(dim=-1))
            best_logprob, best = step.max(dim=-1)
            ends = self._word_ends[best] | ~torch.isfinite(best_logprob)
            still = []
            for i, token, logprob, end in zip(
                live, best.tolist(), best_logprob.tolist(), ends.tolist(), strict=True
            ):
                if not end:
                    words[i].append(token)
                    logprobs[i] += logprob
                    still.append(i)
            live = still
        out: list[list[Scored]] = [[] for _ in firsts]
        for row, word, logprob in zip(owners, words, logprobs, strict=True):
            out[row].append((tuple(word), logprob))
        return out


def _rows(encoded: BaseModelOutput, rows: torch.Tensor | None = None) -> BaseModelOutput:
    """A new encoder output of ``encoded``'s kind (a copying model's carries its source ids)
    holding the given rows of each of its tensors (all of them without ``rows``)."""
    fields = {name: value if rows is None else value[rows] for name, value in encoded.items()}
    return type(encoded)(**fields)
