"""N-gram identifiers (SEAL), the default identifier kind: the model generates substrings of
documents, not docid symbols.

The same T5 and tokenizer as the docid kinds learn to map queries and document spans to other
spans of the relevant document (``docid.ngram`` makes the pairs; :func:`seal_examples`);
targets are plain text tokens, so no docid symbols are added to the vocabulary. This module is
the kind's plug-in to the one index lifecycle (:class:`dsi.index.IndexLifecycle`): its settings
(:class:`SealOptions`, with the presets of a model trained with or without queries,
``NGRAM_PRESETS``), its examples and its decoding structures, the n-gram index of the corpus
(``trie.fmindex``) and its word index (``docid.words``). Search is
:class:`dsi.ngram_retriever.NgramRetriever`, with the scoring stage :mod:`dsi.scoring` and the
optional feedback stage :mod:`dsi.feedback`.

Index directory (the same format as ``dsi.index``; ``manifest.json`` says ``docid_scheme:
"ngram"``): ``manifest.json``, ``index.json`` (``docids: "ngram"``; ``docid_options`` hold the
n-gram settings, ``preset`` and ``scoring``), ``model/``, ``ngram_index/``
(``trie.fmindex.NgramIndex`` files over the tokenized ``title + " " + text`` of every document,
separator = pad id 0), ``word_index/`` (``docid.words.WordIndex`` of the same texts),
``documents.jsonl``, for the fused kind (``docids: "ngram+semantic"``, :mod:`dsi.fusion`)
``fused_docids/`` (its semantic docid map and ``fusion.json``: the marker and EOS token ids)
and, if there were training queries, ``training_queries.jsonl``; ``query_generator/`` when the
index keeps a query generator (``IndexConfig.query_generator`` or ``pseudo_queries``), whose
generated queries are replayed by additions (DSI++'s generative memory).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from docid.base import DocidMap, fit_docids
from docid.io import atomic_write_text
from docid.ngram import (
    iter_salient_span_pairs,
    iter_supervised_pairs,
    iter_unsupervised_pairs,
    span_stopwords,
)
from docid.words import DEFAULT_LANGUAGE, WordIndex
from dsi.config import DOCID_SETTINGS, AddConfig, IndexConfig, TrainConfig
from dsi.continual import add_order
from dsi.data import Corpus, TrainingQueries, expanded_corpus
from dsi.example_store import (
    POOL,
    TRAIN,
    StoreWriter,
    chunks,
    tokenized,
    write_pairs,
    write_views,
)
from dsi.feedback import FEEDBACK_DIR, FeedbackWords
from dsi.fusion import MARKER_SYMBOL
from dsi.index import Addition, Fitted, IndexLifecycle, build_fingerprint, docid_texts
from dsi.index_format import IndexLoadError
from dsi.pseudo_queries import QueryGenerator
from dsi.timing import stage
from dsi.tokens import WordCache, token_stream
from trie.fmindex import NgramIndex
from trie.prefix import PrefixTrie

log = logging.getLogger(__name__)

SCHEME = "ngram"
# The fused kind (issue 29, dsi.fusion): the same model also learns semantic docids, after a
# marker token, and search fuses the two rankings.
FUSED = "ngram+semantic"
FUSED_SCHEME = "semantic"
SCHEMES = (SCHEME, FUSED)
FUSED_DIR = "fused_docids"
FUSED_FILE = "fusion.json"
NGRAM_DIR = "ngram_index"
WORD_DIR = "word_index"
SCORINGS = ("bm25", "intersective")
# Feedback reads documents in windows as long as the longest the model was trained to copy from
# (docid.ngram.salient_span_pairs' source_words).
FEEDBACK_WINDOW_WORDS = 24


@dataclass(frozen=True)
class NgramPreset:
    """What differs between a model trained with training queries and one that learned from the
    documents alone (``NGRAM_PRESETS``)."""

    # Noisy window -> rare-word span inside it: teaches a model from scratch to copy. Without
    # training queries these pairs are all the model learns from, and fresh ones beat more epochs
    # over few (Cranfield dev nDCG@10, experiments/quality.py); with queries, many of them dilute
    # the query pairs (SciFact dev).
    salient_pairs_per_doc: int
    # When larger than the count above, each epoch draws that many copy pairs per document
    # afresh from a pool of this many per document (SealOptions.max_salient_pairs in all),
    # instead of repeating the same ones (SciFact dev nDCG@10 0.629 against 0.624,
    # experiments/quality.py). Without training queries a pool (700 drawing 120 per epoch) did
    # not beat the same 120 every epoch (Cranfield dev nDCG@10 0.251 against 0.249, test 0.246
    # against 0.265): 0, no pool.
    salient_pool_per_doc: int
    # The weight of the BM25 of the n-grams' words (SealOptions.word_weight). A model trained
    # without queries has only learned to copy document spans: its n-grams are the query's own
    # phrases, whose words rank documents better than the phrases do, so they weigh more. Dev
    # nDCG@10 with 3 against 0.75: Cranfield 0.387 and 0.381 against 0.371 and 0.344 (two
    # seeds), SciFact learning from its documents alone 0.690 against 0.690 (809 queries); with
    # training queries 3 ranked SciFact dev worse (0.704 against 0.715, the mean of two seeds).
    word_weight: float
    # Generative pseudo-relevance feedback (SealOptions.feedback_docs; 0 = off). A model trained
    # without queries reads its 5 best documents: its first ranking is the query's own words,
    # and the words of its best documents add what the query lacks (chosen on dev by
    # experiments/feedback.py).
    feedback_docs: int
    # The fused kind's weights (SealOptions.fusion_weight, plan_weight), chosen on dev. With
    # training queries 0 and 0 (experiments/rules/fusion_retune.md): once the lexical score had
    # the expanded word index and the query's own words, the docid part no longer added on
    # SciFact dev (0.781 without it, at most 0.782 with it, a tie the rule gives to 0; it was 1
    # and 4 by rules/fusion_dev.md when the lexical score was the model's terms alone, 0.707
    # against 0.689). Without training queries 0 and 0 (rules/fusion_dev.md's pooled
    # grid, Cranfield dev and SciFact-from-documents dev weighing the same): lexical alone
    # 0.552, the best cell 0.554 (1 and 2), within 0.002: a tie the rule gives to 0, so the
    # docid part adds nothing on dev there either.
    fusion_weight: float
    plan_weight: float
    # The word index holds each document's words and those of the training queries that judge
    # it, as bm25+queries does (SealOptions.expand_words), and the lexical score adds
    # ``query_weight`` times the BM25 of the query's own words over it: SciFact dev nDCG@10 of the
    # fused kind 0.707 -> 0.724 expanded -> 0.774 with the query's words at 2
    # (experiments/rules/word_expansion.md, query_words.md). Without training queries there is
    # nothing to expand, and the query's words wait for a rule on those dev sets: 0.
    expand_words: bool
    query_weight: float


WITH_QUERIES = "with_queries"
WITHOUT_QUERIES = "without_queries"
# The n-gram kind's presets; ``docid_options.preset`` names one, or the build picks one by
# whether it has training queries (and search by whether the index has any).
NGRAM_PRESETS: dict[str, NgramPreset] = {
    WITH_QUERIES: NgramPreset(
        salient_pairs_per_doc=6,
        salient_pool_per_doc=60,
        word_weight=0.75,
        feedback_docs=0,
        fusion_weight=0.0,
        plan_weight=0.0,
        expand_words=True,
        query_weight=2.0,
    ),
    WITHOUT_QUERIES: NgramPreset(
        salient_pairs_per_doc=120,
        salient_pool_per_doc=0,
        word_weight=3.0,
        feedback_docs=5,
        fusion_weight=0.0,
        plan_weight=0.0,
        expand_words=False,
        query_weight=0.0,
    ),
}


@dataclass(frozen=True)
class SealOptions:
    """The n-gram kind's parameters: its two settings (``preset`` and ``scoring``, from
    ``IndexConfig.docid_options``) and the constants of its training and search, each with why
    it has its value. Only the settings come from a config (``from_config``)."""

    # Settings (DOCID_SETTINGS["ngram"]): a name in NGRAM_PRESETS, or None to choose by whether
    # there are training queries.
    preset: str | None = None
    # Document scoring: "bm25" (docid.ngram.bm25_score) or SEAL's "intersective" score
    # (docid.ngram.seal_score). BM25 over the generated n-grams ranks better for a small model
    # trained from scratch: leak-free SciFact dev nDCG@10 0.774 against 0.704 (SEAL's alpha 2)
    # and 0.644 (alpha 3) (experiments/rules/search_dev.md).
    scoring: str = "bm25"

    # Training data (docid.ngram.supervised_pairs / salient_span_pairs / unsupervised_pairs).
    spans_per_query: int = 3
    # Copy pairs per document: the fewest a preset is cut to in a large corpus (below), and what
    # an addition replays of the documents indexed before (the with_queries preset's count).
    salient_pairs_per_doc: int = NGRAM_PRESETS[WITH_QUERIES].salient_pairs_per_doc
    # ...but no more than this many copy pairs in all (each holds ~1.5 KB while training), down
    # to salient_pairs_per_doc per document in a large corpus.
    max_salient_pairs: int = 1_000_000
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
    # 0.284 against 0.249, the same models; experiments/quality.py). The preset sets it for
    # search (``for_search``).
    word_weight: float = NGRAM_PRESETS[WITH_QUERIES].word_weight
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
    # Generative pseudo-relevance feedback (0 documents = off; the preset sets it for search):
    # the model reads each of the ``feedback_docs`` best documents of the first ranking in
    # windows, as it read documents in training, and the ``feedback_words`` words it generates
    # most often there score documents too (BM25 weighted by their share), scaled so that the
    # best of them scores ``feedback_weight`` times the first ranking's best. Chosen on dev by
    # experiments/feedback.py.
    feedback_docs: int = NGRAM_PRESETS[WITH_QUERIES].feedback_docs
    feedback_words: int = 10
    feedback_weight: float = 0.25
    # The fused kind only (FUSED, dsi.fusion): a document the docid beams reach gains
    # ``fusion_weight`` times the query's best lexical score times its docid's share of the
    # beams' probability; ``plan_weight`` weighs PAG's planning prior (the best lexical score
    # under a docid prefix, over the query's best) in the docid beam search (0 = off). Both come
    # from the preset (``for_search``; chosen on dev, experiments/rules/fusion_dev.md).
    fusion_weight: float = NGRAM_PRESETS[WITH_QUERIES].fusion_weight
    plan_weight: float = NGRAM_PRESETS[WITH_QUERIES].plan_weight
    # The word index of documents expanded with their training queries, and the weight of the
    # BM25 of the query's own words over it (NgramPreset; ``for_search``).
    expand_words: bool = NGRAM_PRESETS[WITH_QUERIES].expand_words
    query_weight: float = NGRAM_PRESETS[WITH_QUERIES].query_weight

    # Settings that only change how a trained model is searched, not how it is trained.
    DECODING: ClassVar[tuple[str, ...]] = ("scoring",)

    @classmethod
    def from_config(cls, config: IndexConfig) -> SealOptions:
        """The options of ``config``'s n-gram settings (``docid_options``), checked."""
        names = DOCID_SETTINGS[config.docids if config.docids in SCHEMES else SCHEME]
        unknown = sorted(set(config.docid_options) - set(names))
        if unknown:
            raise ValueError(
                f"docid_options has unknown n-gram settings {unknown}; known ones are "
                f"{list(names)}."
            )
        made = cls(**config.docid_options)
        if made.scoring not in SCORINGS:
            raise ValueError(
                f"docid_options scoring must be one of {list(SCORINGS)}, got {made.scoring!r}."
            )
        if made.preset is not None and made.preset not in NGRAM_PRESETS:
            raise ValueError(
                f"docid_options preset must be one of {list(NGRAM_PRESETS)} or null (chosen by "
                f"whether there are training queries), got {made.preset!r}."
            )
        return made

    def preset_for(self, with_queries: bool) -> NgramPreset:
        """The preset named by ``preset``, or else the one for a model trained with (or
        without) training queries."""
        if self.preset is not None:
            return NGRAM_PRESETS[self.preset]
        return NGRAM_PRESETS[WITH_QUERIES if with_queries else WITHOUT_QUERIES]

    def for_search(self, with_queries: bool) -> SealOptions:
        """These options as a model trained with (or without) training queries is searched:
        ``word_weight``, ``feedback_docs``, the fused kind's two weights and the word index's
        expansion and query weight from its preset (``preset_for``)."""
        chosen = self.preset_for(with_queries)
        return dataclasses.replace(
            self,
            word_weight=chosen.word_weight,
            feedback_docs=chosen.feedback_docs,
            fusion_weight=chosen.fusion_weight,
            plan_weight=chosen.plan_weight,
            expand_words=chosen.expand_words,
            query_weight=chosen.query_weight,
        )

    def salient_pairs_for(self, num_docs: int, with_queries: bool) -> int:
        """Copy pairs per document when ``num_docs`` documents are indexed with or without
        training queries: the preset's, cut to what ``max_salient_pairs`` affords (never below
        ``salient_pairs_per_doc``)."""
        wanted = self.preset_for(with_queries).salient_pairs_per_doc
        affordable = self._affordable_per_doc(num_docs)
        return min(wanted, max(self.salient_pairs_per_doc, affordable))

    def salient_pool_for(self, num_docs: int, with_queries: bool) -> int:
        """Copy pairs per document that each epoch's are drawn from afresh, or 0 when every
        epoch repeats the same ones."""
        wanted = self.preset_for(with_queries).salient_pool_per_doc
        pooled = min(wanted, self._affordable_per_doc(num_docs))
        return pooled if pooled > self.salient_pairs_for(num_docs, with_queries) else 0

    def _affordable_per_doc(self, num_docs: int) -> int:
        return self.max_salient_pairs // max(1, num_docs)


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
    """``config`` with its ``docid_options`` naming every n-gram setting (defaults filled in),
    as an n-gram index saves it: a later change of defaults leaves such a config alone."""
    options = SealOptions.from_config(config)
    settings = {name: getattr(options, name) for name in DOCID_SETTINGS[config.docids]}
    return dataclasses.replace(config, docid_options=settings)


class _NoSymbols:
    """What ``dsi.index.make_model`` reads of a docid map: n-gram targets add no symbols."""

    symbols: list[str] = []


class _FusedSymbols:
    """The fused kind's new tokens, for ``dsi.index.make_model``: the marker, then the docid
    symbols."""

    def __init__(self, docids: DocidMap) -> None:
        self.docids = docids
        self.symbols = [MARKER_SYMBOL, *docids.symbols]


@dataclass(frozen=True)
class FusedDocids:
    """The docids a fused model decodes besides n-grams (``docids: "ngram+semantic"``).

    Their targets are ``[marker, offset + symbol..., EOS]``: the marker (the first token after
    the text vocabulary) asks for a docid, so the n-gram task's targets stay as they are and
    search decodes both from one encoder pass.
    """

    docids: DocidMap
    marker: int
    trie: PrefixTrie  # every [marker, offset + symbol..., EOS]

    @property
    def offset(self) -> int:
        """The token id of docid symbol 0."""
        return self.marker + 1

    @classmethod
    def make(cls, docids: DocidMap, marker: int, eos: int) -> FusedDocids:
        trie = PrefixTrie.from_sequences(
            [[marker, *(marker + 1 + s for s in seq), eos] for seq in docids.sequences]
        )
        return cls(docids, marker, trie)

    def target(self, doc_id: str, eos: int) -> list[int]:
        """The decoder target of ``doc_id``'s docid."""
        return [self.marker, *(self.offset + s for s in self.docids.sequence(doc_id)), eos]

    def save(self, directory: Path, eos: int) -> None:
        """The docid map's files and ``fusion.json`` (the marker and EOS token ids)."""
        self.docids.save(directory)
        meta = {"scheme": self.docids.scheme, "marker": self.marker, "eos": eos}
        atomic_write_text(directory / FUSED_FILE, json.dumps(meta) + "\n")

    @classmethod
    def load(cls, directory: Path) -> FusedDocids:
        meta = json.loads((directory / FUSED_FILE).read_text(encoding="utf-8"))
        return cls.make(DocidMap.load(directory), int(meta["marker"]), int(meta["eos"]))


def _fused_docids(corpus: Corpus, work_dir: Path | None) -> DocidMap:
    """The semantic docids of a fused build (cached in ``work_dir``, so a resumed build and
    every process of a distributed one read the same)."""
    cache = None if work_dir is None else work_dir / FUSED_DIR
    if cache is not None and (cache / "docids.jsonl").exists():
        return DocidMap.load(cache)
    docids = fit_docids(FUSED_SCHEME, list(corpus.doc_ids), docid_texts(FUSED_SCHEME, corpus))
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        docids.save(cache)
    return docids


@dataclass
class NgramGenerativeIndex(IndexLifecycle):
    """Tokenizer + T5 + n-gram index over the tokenized corpus: everything SEAL search needs.

    N-grams need no new identifiers: an addition's documents join the n-gram and word indexes
    (rebuilt over the whole corpus) and training continues on their span pairs (and training
    queries); ``replay="documents"`` replays old documents' span pairs.
    """

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
    # The fused kind's docids (``docids: "ngram+semantic"``); None for plain n-grams.
    fused: FusedDocids | None = None
    # What the model generated reading each document, for feedback (dsi.feedback; read at
    # index time by NgramRetriever.prepare_feedback): feedback/, or None.
    feedback_words: FeedbackWords | None = None

    @property
    def num_docs(self) -> int:
        return len(self.corpus.doc_ids)

    @property
    def words(self) -> WordIndex:
        """The stemmed words of the corpus, expanded with the training queries when the preset
        says so (built on first use when the index has none)."""
        if self.word_index is None or self.word_index.num_docs != self.num_docs:
            self.word_index = word_index(
                self.corpus, self.training_pairs, self.expands_words, self.config.language
            )
        return self.word_index

    @property
    def expands_words(self) -> bool:
        """Whether this index's word index holds its training queries' words (its preset)."""
        with_queries = bool(self.training_pairs)
        return with_queries and self.options.preset_for(with_queries).expand_words

    @property
    def options(self) -> SealOptions:
        return SealOptions.from_config(self.config)

    # ----------------------------------------------------------------- building
    @classmethod
    def _kind_config(cls, config: IndexConfig | None) -> IndexConfig:
        config = config or IndexConfig(docids=SCHEME)
        if config.docids not in SCHEMES:
            raise ValueError(
                f"NgramGenerativeIndex needs docids one of {list(SCHEMES)}, got {config.docids!r}."
            )
        return resolved_config(config)

    @classmethod
    def _kind_fingerprint(cls, corpus: Corpus, config: IndexConfig, queries: Any) -> str:
        return ngram_fingerprint(corpus, config, queries)

    @classmethod
    def _kind_identifiers(cls, config: IndexConfig, corpus: Corpus, work_dir: Path | None) -> Any:
        if config.docids == FUSED:
            return _FusedSymbols(_fused_docids(corpus, work_dir))
        return _NoSymbols()

    @classmethod
    def _kind_structures(cls, fitted: Fitted) -> dict[str, Any]:
        # The identifiers of this kind are the corpus's n-grams (and its words).
        pairs = fitted.pairs
        preset = SealOptions.from_config(fitted.config).preset_for(bool(pairs))
        parts = _ngram_structures(
            fitted.tokenizer,
            fitted.model,
            fitted.corpus,
            fitted.config.language,
            pairs,
            preset.expand_words,
        )
        if isinstance(fitted.identifiers, _FusedSymbols):
            eos = fitted.model.config.eos_token_id
            parts["fused"] = FusedDocids.make(fitted.identifiers.docids, fitted.offset, eos)
        return parts

    def _kind_training_examples(self, pairs: list[tuple[str, str]], out: StoreWriter) -> int:
        options, corpus, train_config = self.options, self.corpus, self.config.train
        eos = self.model.config.eos_token_id
        copies = options.salient_pairs_for(len(corpus.doc_ids), bool(pairs))
        pooled = options.salient_pool_for(len(corpus.doc_ids), bool(pairs))
        per_epoch = 0
        if pooled:
            seal_examples(
                *(self.tokenizer, corpus, [], train_config, options, eos, out, POOL),
                salient_pairs_per_doc=pooled,
                language=self.config.language,
            )
            per_epoch, copies = copies * len(corpus.doc_ids), 0
        seal_examples(
            *(self.tokenizer, corpus, pairs, train_config, options, eos, out, TRAIN),
            salient_pairs_per_doc=copies,
            language=self.config.language,
        )
        if self.fused is not None:
            # The docid task learns what DSI does: every document's views, and the training
            # queries, -> its docid; copy pairs teach the n-gram task only.
            self._docid_examples(corpus, train_config, out, TRAIN)
            self._docid_query_examples(pairs, train_config, "fused-query", out, TRAIN)
        return per_epoch

    def _kind_query_examples(
        self,
        pairs: list[tuple[str, str]],
        train_config: TrainConfig,
        task: str,
        out: StoreWriter,
        part: str,
    ) -> None:
        options = self.options
        eos = self.model.config.eos_token_id
        query_examples(
            *(self.tokenizer, self.corpus, pairs, train_config, options, eos, options.seed, task),
            out,
            part,
            self.config.language,
        )
        if self.fused is not None:
            self._docid_query_examples(pairs, train_config, f"{task}-docid", out, part)

    def _docid_examples(
        self, corpus: Corpus, train_config: TrainConfig, out: StoreWriter, part: str
    ) -> None:
        """Document views -> docid (the fused kind's indexing examples)."""
        assert self.fused is not None
        eos = self.model.config.eos_token_id
        documents = zip(
            tokenized(self.tokenizer, corpus.full_texts()),
            (self.fused.target(d, eos) for d in corpus.doc_ids),
            strict=True,
        )
        write_views(out, part, "fused-index", documents, train_config, train_config.seed)

    def _docid_query_examples(
        self,
        pairs: Sequence[tuple[str, str]],
        train_config: TrainConfig,
        task: str,
        out: StoreWriter,
        part: str,
    ) -> None:
        """(query, doc id) pairs -> docid examples, ``query_repeats`` times (the fused kind)."""
        if not pairs or self.fused is None:
            return
        eos = self.model.config.eos_token_id
        queries = zip(
            tokenized(self.tokenizer, (q for q, _ in pairs)),
            (self.fused.target(d, eos) for _, d in pairs),
            strict=True,
        )
        write_pairs(out, part, task, queries, train_config, train_config.query_repeats)

    # ----------------------------------------------------------------- adding
    def _kind_addition(self, new: Addition) -> None:
        if self.fused is not None:
            raise ValueError(
                f"Adding documents to an {FUSED!r} index is not supported yet; build it again "
                "with all the documents."
            )
        return None

    def _kind_addition_examples(self, new: Addition, added: None, out: StoreWriter) -> None:
        eos = self.model.config.eos_token_id
        # A seed of its own per addition, so new documents' spans are not drawn like old ones'.
        seed = new.config.seed + add_order(self.lineage)
        seal_examples(
            *(self.tokenizer, new.corpus, new.pairs, new.train_config, self.options, eos),
            out,
            TRAIN,
            seed=seed,
            language=self.config.language,
        )

    def _kind_document_replay(
        self,
        doc_ids: list[str],
        train_config: TrainConfig,
        config: AddConfig,
        out: StoreWriter,
        part: str,
    ) -> None:
        options = self.options
        # A replay pool, not the documents' only lesson: the smaller count will do.
        seal_examples(
            self.tokenizer,
            self.corpus.subset(doc_ids),
            [],
            train_config,
            options,
            self.model.config.eos_token_id,
            out,
            part,
            salient_pairs_per_doc=options.salient_pairs_per_doc,
            language=self.config.language,
            span_task="replay-span",
        )

    def _kind_grown(
        self, corpus: Corpus, added: None, pairs: Sequence[tuple[str, str]]
    ) -> dict[str, Any]:
        preset = self.options.preset_for(bool(pairs))
        return _ngram_structures(
            self.tokenizer, self.model, corpus, self.config.language, pairs, preset.expand_words
        )

    def _kind_entry(self, added: None = None) -> dict[str, Any]:
        return {"corpus_tokens": self.ngrams.total_tokens}

    # ------------------------------------------------------------ persistence
    def _kind_save(self, staged: Path) -> None:
        self.ngrams.save(staged / NGRAM_DIR)
        self.words.save(staged / WORD_DIR)
        if self.fused is not None:
            (staged / FUSED_DIR).mkdir()
            self.fused.save(staged / FUSED_DIR, self.model.config.eos_token_id)
        if self.feedback_words is not None:
            self.feedback_words.save(staged / FEEDBACK_DIR)

    def _kind_manifest(self) -> dict[str, Any]:
        return {
            "num_docs": self.num_docs,
            "docid_scheme": self.config.docids,
            # No docid symbols follow the text vocabulary (the fused kind: its docid symbols
            # follow the marker).
            "docid_offset": int(
                self.model.config.vocab_size if self.fused is None else self.fused.offset
            ),
            "corpus_tokens": self.ngrams.total_tokens,
        }

    @classmethod
    def _kind_check_scheme(cls, directory: Path, scheme: str | None) -> None:
        if scheme not in SCHEMES:
            raise IndexLoadError(f"Index {directory} uses {scheme!r} docids, not n-grams.")

    @classmethod
    def _kind_loaded_config(cls, config: IndexConfig) -> IndexConfig:
        SealOptions.from_config(config)
        return config

    @classmethod
    def _kind_load(cls, directory: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
        # Indexes saved before word scoring have none; ``words`` builds it when needed.
        # Mapped, not read: a search touches a few pages of each (docs/scaling.md).
        word_index = None
        if (directory / WORD_DIR).is_dir():
            word_index = WordIndex.load(directory / WORD_DIR, mmap=True)
        fused = None
        if manifest.get("docid_scheme") == FUSED:
            fused = FusedDocids.load(directory / FUSED_DIR)
        feedback = None
        if (directory / FEEDBACK_DIR).is_dir():
            feedback = FeedbackWords.load(directory / FEEDBACK_DIR, mmap=True)
        return {
            "ngrams": NgramIndex.load(directory / NGRAM_DIR, mmap=True),
            "word_index": word_index,
            "fused": fused,
            "feedback_words": feedback,
        }

    def _kind_check_loaded(self, directory: Path, manifest: Mapping[str, Any]) -> None:
        config, ngrams, corpus, word_index = self.config, self.ngrams, self.corpus, self.word_index
        if config.docids != manifest.get("docid_scheme"):
            raise IndexLoadError(
                f"Index {directory} is inconsistent: its manifest says "
                f"{manifest.get('docid_scheme')!r} docids but its config says {config.docids!r}."
            )
        fused = self.fused
        if fused is not None and (
            len(fused.docids) != len(corpus.doc_ids)
            or fused.offset + len(fused.docids.symbols) > self.model.config.vocab_size
        ):
            raise IndexLoadError(
                f"Index {directory} is inconsistent: its {len(fused.docids)} fused docids do not "
                f"match its {len(corpus.doc_ids)} documents or its model's vocabulary."
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
        feedback = self.feedback_words
        if feedback is not None and feedback.num_docs > len(corpus.doc_ids):
            raise IndexLoadError(
                f"Index {directory} is inconsistent: its feedback words hold {feedback.num_docs} "
                f"documents and documents.jsonl {len(corpus.doc_ids)}."
            )


def _ngram_structures(
    tokenizer: Any,
    model: torch.nn.Module,
    corpus: Corpus,
    language: str = DEFAULT_LANGUAGE,
    pairs: Sequence[tuple[str, str]] = (),
    expand: bool = False,
) -> dict[str, Any]:
    """The n-gram index (documents apart by the pad id) and the word index of ``corpus``, its
    words stemmed and stopped for ``language`` (with ``expand``, with the training ``pairs``'
    queries appended to their documents)."""
    ngrams = build_ngram_index(tokenizer, corpus, separator=model.config.pad_token_id)
    with stage("word_index"):
        words = word_index(corpus, pairs, expand, language)
    return {"ngrams": ngrams, "word_index": words}


def word_index(
    corpus: Corpus, pairs: Sequence[tuple[str, str]], expand: bool, language: str
) -> WordIndex:
    """The word index of ``corpus``, its documents expanded with the queries of ``pairs`` that
    judge them when ``expand`` (and there are pairs)."""
    expand = expand and bool(pairs)
    texts = (expanded_corpus(corpus, pairs) if expand else corpus).full_texts()
    return WordIndex.build(texts, language, expanded=expand)


def build_ngram_index(tokenizer: Any, corpus: Corpus, separator: int = 0) -> NgramIndex:
    """The n-gram index over ``tokenize(title + " " + text)`` of every document (no EOS)."""
    with stage("tokenize_documents"):
        ids, lengths = token_stream(tokenizer, corpus.full_texts())
    with stage("ngram_index"):
        return NgramIndex.from_stream(ids, lengths, separator=separator)


def ngram_fingerprint(corpus: Corpus, config: IndexConfig, training: TrainingQueries | None) -> str:
    """The work directory's fingerprint of an n-gram build: only the settings that shape its
    training count (``training_settings``), so a decoding setting alone reuses the checkpoints.
    ``prepare_work_dir`` and ``build`` both use it: were they to differ, every process would
    move the prepared work directory aside."""
    return build_fingerprint(corpus, training_settings(resolved_config(config)), training)


def seal_examples(
    tokenizer: Any,
    corpus: Corpus,
    pairs: Sequence[tuple[str, str]],
    train_config: TrainConfig,
    options: SealOptions,
    eos: int,
    out: StoreWriter,
    part: str,
    seed: int | None = None,
    salient_pairs_per_doc: int | None = None,
    language: str = DEFAULT_LANGUAGE,
    span_task: str = "seal-span",
) -> None:
    """Write the training examples of ``corpus`` into ``part`` of ``out``: span pairs of its
    documents (labelled ``span_task``) and, for ``pairs`` of (query, doc id in ``corpus``),
    query -> title / overlapping spans of the document.

    ``salient_pairs_per_doc`` defaults to ``options.salient_pairs_for`` indexing with queries
    when ``pairs`` has any, without them otherwise. Pairs are made, tokenized and written a
    chunk at a time."""
    seed = options.seed if seed is None else seed
    if salient_pairs_per_doc is None:
        salient_pairs_per_doc = options.salient_pairs_for(len(corpus.doc_ids), bool(pairs))
    span_pairs = iter_salient_span_pairs(
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
        span_pairs = itertools.chain(
            span_pairs,
            iter_unsupervised_pairs(
                zip(corpus.titles, corpus.texts, strict=True),
                pairs_per_doc=options.pairs_per_doc,
                source_words=options.source_words,
                min_words=options.min_words,
                max_words=options.max_words,
                include_title=options.include_title,
                seed=seed,
            ),
        )
    if salient_pairs_per_doc or options.pairs_per_doc:
        _text_examples(tokenizer, span_pairs, train_config, options, eos, 1, span_task, out, part)
    query_examples(
        tokenizer,
        corpus,
        pairs,
        train_config,
        options,
        eos,
        seed,
        "seal-query",
        out,
        part,
        language,
    )


def query_examples(
    tokenizer: Any,
    corpus: Corpus,
    pairs: Sequence[tuple[str, str]],
    train_config: TrainConfig,
    options: SealOptions,
    eos: int,
    seed: int,
    task: str,
    out: StoreWriter,
    part: str,
    language: str = DEFAULT_LANGUAGE,
) -> None:
    """Write (query -> title and spans of its relevant document) examples, ``query_repeats``
    times, into ``part`` of ``out``."""
    if not pairs:
        return
    position = corpus.positions()
    query_pairs = iter_supervised_pairs(
        ((q, corpus.titles[position[d]], corpus.texts[position[d]]) for q, d in pairs),
        spans_per_query=options.spans_per_query,
        min_words=options.min_words,
        max_words=options.max_words,
        temperature=options.temperature,
        include_title=options.include_title,
        seed=seed,
        stopwords=span_stopwords(language),
    )
    _text_examples(
        tokenizer,
        query_pairs,
        train_config,
        options,
        eos,
        train_config.query_repeats,
        task,
        out,
        part,
    )


def _text_examples(
    tokenizer: Any,
    pairs: Iterable[tuple[str, str]],
    train_config: TrainConfig,
    options: SealOptions,
    eos: int,
    repeats: int,
    task: str,
    out: StoreWriter,
    part: str,
) -> None:
    """Write (source text, target text) pairs as examples; targets are cut to ``max_tokens``
    + EOS."""
    # One word cache for both sides: targets are words of the sources' documents.
    cache = WordCache(tokenizer)

    def tokens() -> Iterator[tuple[list[int], list[int]]]:
        for chunk in chunks(pairs):
            sources = cache.encode([s for s, _ in chunk])
            targets = cache.encode([t for _, t in chunk])
            # A cut n-gram is still a prefix of a corpus n-gram, so decoding can reach it.
            for source, target in zip(sources, targets, strict=True):
                yield source, list(target[: options.max_tokens]) + [eos]

    write_pairs(out, part, task, tokens(), train_config, repeats)
