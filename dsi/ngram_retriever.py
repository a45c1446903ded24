"""N-gram retrieval: decode corpus n-grams for a query, then rank the documents holding them.

:class:`NgramRetriever` searches an :class:`dsi.seal.NgramGenerativeIndex`: beam search
constrained to the corpus (``trie.ngram_processor``) generates n-grams, the decoder's best first
tokens and the words they begin (:class:`Generation`); the scoring stage (:mod:`dsi.scoring`)
ranks the documents by them, and the optional feedback stage (:mod:`dsi.feedback`) reranks
with the words the model generates reading the best documents.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers.modeling_outputs import BaseModelOutput

from docid.ngram import best_logprobs
from docid.words import analyze, ready_analyzer
from dsi.decoding import (
    EMPTY_SLOT,
    ConstrainedRetriever,
    DecodingError,
    Hit,
    RideAlong,
    constrained_generate,
    encoder_rows,
    keep_heap_flat,
    next_token_logits,
)
from dsi.feedback import (
    FeedbackWords,
    GenerativeFeedback,
    keep_table,
    kept_table,
    model_fingerprint,
    read_documents,
)
from dsi.fusion import Chain, ExcludeFirst, PlanningPrior, PrefixRanges, fuse, lexical_vectors
from dsi.scoring import Scored, contributions, score_corpus, score_documents
from dsi.seal import NgramGenerativeIndex
from trie.ngram_processor import NgramLogitsProcessor
from trie.processor import TrieLogitsProcessor

log = logging.getLogger(__name__)

# A query's lexical ranking: (document index, score), best first.
Ranking = list[tuple[int, float]]


class Generation(NamedTuple):
    """What the model generates for one query."""

    beams: list[Scored]  # the beams' n-grams
    unigrams: list[Scored]  # the ``unigrams`` most likely first tokens
    # The ``word_unigrams`` best of those that start a word, each completed to a whole word
    # when ``complete_words`` is set.
    words: list[Scored]
    # The query's own analysed words, which the lexical score adds at ``query_weight`` (empty
    # when that is 0).
    own_words: tuple[str, ...] = ()


class NgramRetriever(ConstrainedRetriever):
    """Searches an :class:`NgramGenerativeIndex`: decode corpus n-grams, then score documents."""

    def __init__(
        self,
        index: NgramGenerativeIndex,
        device: str | torch.device | None = None,
        num_beams: int | None = None,
    ) -> None:
        self.options = index.options.for_search(with_queries=bool(index.training_pairs))
        saved = index.word_index
        if saved is not None and saved.expanded != index.expands_words:
            # An index saved before its preset expanded the word index (or after it stopped):
            # searched as the preset says, the word index built again on first use.
            log.info(
                "Building the word index as this index's preset says (expanded: %s).",
                index.expands_words,
            )
            index.word_index = None
        # SEAL ranks n-grams by their summed token log-probabilities: no length penalty.
        super().__init__(index, device, num_beams, length_penalty=0.0)
        pieces = index.tokenizer.convert_ids_to_tokens(list(range(len(index.tokenizer))))
        self._word_starts = {i for i, piece in enumerate(pieces) if piece.startswith("\u2581")}
        # Where completing a word stops: a token that starts the next word, or EOS.
        vocab = self.model.config.vocab_size
        self._word_ends = torch.zeros(vocab, dtype=torch.bool, device=self.device)
        self._word_ends[[t for t in self._word_starts if t < vocab] + [self._eos]] = True
        self.feedback = GenerativeFeedback(index, self._read)
        ready_analyzer(index.config.language)  # every search analyses words

    def _make_processors(self) -> None:
        cfg = self.model.config
        self._processor = NgramLogitsProcessor(
            self.index.ngrams,
            decoder_start_token_id=cfg.decoder_start_token_id,
            eos_token_id=cfg.eos_token_id,
            pad_token_id=cfg.pad_token_id,
            min_tokens=self.options.min_tokens,
        )
        # What n-gram beam search applies: the fused kind's first step leaves the docid marker
        # out, so the n-grams' log-probabilities are those of the n-gram task alone.
        self._ngram_processor: Any = self._processor
        self._first_excluded: list[int] = []
        fused = self.index.fused
        if fused is None:
            return
        self._first_excluded = [fused.marker]
        self._ngram_processor = Chain(ExcludeFirst(self._first_excluded), self._processor)
        self._docid_processor = TrieLogitsProcessor(
            fused.trie,
            decoder_start_token_id=cfg.decoder_start_token_id,
            eos_token_id=cfg.eos_token_id,
            pad_token_id=cfg.pad_token_id,
            inplace=True,
        )
        eos = cfg.eos_token_id
        # The docid tokens after the marker, per document in corpus order: the planning
        # prior's trie nodes, and the way back from a decoded docid to its document.
        sequences = [
            (*(fused.offset + s for s in fused.docids.sequence(d)), eos)
            for d in self.index.corpus.doc_ids
        ]
        self._ranges = PrefixRanges(sequences)
        self._doc_of_docid = {seq: doc for doc, seq in enumerate(sequences)}
        self._docid_steps = max(map(len, sequences)) + 1  # the marker, then the docid

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None, **kwargs) -> NgramRetriever:
        return cls(NgramGenerativeIndex.load(directory), device=device, **kwargs)

    @property
    def num_docs(self) -> int:
        return self.index.num_docs

    def _search(
        self, queries: Sequence[str], k: int, batch_size: int, num_beams: int | None
    ) -> list[list[Hit]]:
        """For each query, up to ``k`` documents containing the generated n-grams, best first.

        ``num_beams`` n-grams are generated per query; unlike docid search it need not reach
        ``k``, since one n-gram can point to many documents. Documents are ranked by
        ``SealOptions.scoring`` plus ``word_weight`` times the BM25 of the words of the beams'
        n-grams and of the words the best unigrams begin (:meth:`query_words`), plus, with
        ``feedback_docs``, the BM25 of the words the model generates reading the best of those
        documents (:mod:`dsi.feedback`); if fewer than ``k`` score above 0 (e.g. only n-grams more frequent than ``max_occurrences``, or SEAL's score
        with a model that prefers frequent n-grams no more than their corpus frequency
        predicts), documents containing the best generated n-grams follow, scored by that
        n-gram's log-probability (negative, so below the rest).
        """
        return self._ranked(queries, k, batch_size, num_beams)[1]

    def _ranked(
        self, queries: Sequence[str], k: int, batch_size: int, num_beams: int | None
    ) -> tuple[list[Generation], list[list[Hit]]]:
        """What the model generated for each query, and the query's hits: the lexical ranking
        (:meth:`rank_generations`), fused with the docid beams for the fused kind."""
        if self.index.fused is None or self.options.fusion_weight == 0:
            generated = self.generate(queries, batch_size, num_beams)
            return generated, self.rank_generations(generated, k, batch_size, num_beams)
        generated, parts = self.fusion_parts(queries, k, batch_size, num_beams)
        fused = [fuse(lexical, reached, self.options.fusion_weight) for lexical, reached in parts]
        return generated, self._hits(generated, fused, k)

    def fusion_parts(
        self,
        queries: Sequence[str],
        k: int = 10,
        batch_size: int = 32,
        num_beams: int | None = None,
        plan_weight: float | None = None,
        lexical: Callable[[list[str], list[Generation]], list[Ranking]] | None = None,
    ) -> tuple[list[Generation], list[tuple[Ranking, Ranking]]]:
        """The fused kind's two rankings of each query, from one encoder pass per batch: its
        full lexical ranking (``lexical(queries, generations)`` when given, else the n-gram
        ranking with feedback if any, uncut) and the documents its docid beams reach
        (``num_beams`` beams, whatever ``k``) with their docids' log-probabilities, decoded
        with PAG's prior from that lexical ranking at ``plan_weight`` (None:
        ``SealOptions.plan_weight``; 0: none). Both are ``(document index, score)`` lists;
        :func:`dsi.fusion.fuse` combines them."""
        if self.index.fused is None:
            raise ValueError(
                "This index has no docids to fuse: build it with docids 'ngram+semantic'."
            )
        plan = self.options.plan_weight if plan_weight is None else plan_weight
        beams = num_beams or self.num_beams
        generated: list[Generation] = []
        parts: list[tuple[Ranking, Ranking]] = []
        for start in range(0, len(queries), batch_size):
            batch = list(queries[start : start + batch_size])
            encoded, mask = self._encode(batch)
            batch_generated = self._with_own_words(
                batch, self._generate_encoded(encoded, mask, beams)
            )
            if lexical is None:
                rankings = self.lexical_rankings(batch_generated, batch_size, beams)
            else:
                rankings = lexical(batch, batch_generated)
            # ``beams`` docid beams whatever ``k``: more beams would spread the docids' share of
            # their probability, so a search's top documents would depend on how deep it asks;
            # the lexical ranking fills the rest of the k.
            reached = self._decode_docids(encoded, mask, beams, rankings, plan)
            generated += batch_generated
            parts += list(zip(rankings, reached, strict=True))
        return generated, parts

    @torch.inference_mode()
    def _decode_docids(
        self,
        encoded: BaseModelOutput,
        mask: torch.Tensor,
        beams: int,
        rankings: Sequence[Ranking],
        plan_weight: float,
    ) -> list[Ranking]:
        """Per query, the documents whose docids the beams decoded (after the marker, under the
        docid trie) with their log-probabilities, best first; with ``plan_weight``, the beams
        follow PAG's prior too, which is taken out of the scores returned."""
        fused = self.index.fused
        rows = mask.shape[0]
        # Two beams at least: transformers' greedy path scores no sequence.
        beams = max(beams, 2)
        start = self.model.config.decoder_start_token_id
        prefix = torch.tensor([[start, fused.marker]] * rows, device=self.device)
        processor: Any = self._docid_processor
        priors = None
        if plan_weight:
            priors = self._ranges.node_max(lexical_vectors(rankings, self.num_docs))
            processor = Chain(
                self._docid_processor, PlanningPrior(self._ranges, priors, beams, plan_weight)
            )
        sequences, scores = constrained_generate(
            self.model,
            {
                "encoder_outputs": encoder_rows(encoded),
                "attention_mask": mask,
                "decoder_input_ids": prefix,
            },
            beams,
            self._docid_steps,
            processor,
            0.0,
        )
        out: list[Ranking] = []
        for row in range(rows):
            reached: dict[int, float] = {}
            for j in range(row * beams, (row + 1) * beams):
                score = scores[j]
                if not math.isfinite(score) or score <= EMPTY_SLOT:
                    continue  # fewer docids than beams: transformers fills the slot
                tokens = sequences[j][1:]  # after the marker
                if self._eos not in tokens:
                    continue
                doc = self._doc_of_docid.get(tuple(tokens[: tokens.index(self._eos) + 1]))
                if doc is None:
                    raise DecodingError(
                        f"Decoding produced {sequences[j]}, no docid of this index."
                    )
                if priors is not None:
                    leaf = self._ranges.leaf_of[doc]
                    score -= plan_weight * (priors[row, leaf] - priors[row, 0])
                if doc not in reached:
                    reached[doc] = score
            out.append(sorted(reached.items(), key=lambda item: (-item[1], item[0])))
        return out

    def _explain(
        self, queries: Sequence[str], k: int, batch_size: int, num_beams: int | None
    ) -> tuple[list[list[Hit]], list[list[dict[str, Any]]]]:
        """Each hit's generated n-grams (as text, with log-probability and score) and words
        (with score) that scored it (:func:`dsi.scoring.contributions`), and ``rest``: the
        part of its score they do not account for (the feedback stage's, or for a backfilled
        document, whose score is an n-gram's log-probability, all of it)."""
        generated, results = self._ranked(queries, k, batch_size, num_beams)
        scores_words = bool(self.options.word_weight)
        words = self.query_words(generated) if scores_words else [[] for _ in generated]
        position = self.index.corpus.positions()
        decode = self.index.tokenizer.decode
        explained = []
        for generation, query_words, hits in zip(generated, words, results, strict=True):
            docs = [position[hit.doc_id] for hit in hits]
            parts = contributions(
                self.options,
                generation.beams + generation.unigrams,
                self.index.ngrams,
                docs,
                query_words,
                self.index.words if scores_words or generation.own_words else None,
                generation.own_words,
            )
            row = []
            for doc, hit in zip(docs, hits, strict=True):
                ngrams = [
                    {"ngram": decode(list(n)), "logprob": round(lp, 5), "score": round(sc, 5)}
                    for n, lp, sc in parts[doc]["ngrams"]
                ]
                scored = [{"word": w, "score": round(sc, 5)} for w, sc in parts[doc]["words"]]
                own = parts[doc]["query_words"]
                summed = sum(t[-1] for t in parts[doc]["ngrams"] + parts[doc]["words"] + own)
                rest = round(hit.score - summed, 5)
                entry = {"ngrams": ngrams, "words": scored, "rest": rest}
                if own:
                    entry["query_words"] = [{"word": w, "score": round(sc, 5)} for w, sc in own]
                row.append(entry)
            explained.append(row)
        return results, explained

    def rank_generations(
        self,
        generated: Sequence[Generation],
        k: int = 10,
        batch_size: int = 32,
        num_beams: int | None = None,
    ) -> list[list[Hit]]:
        """:meth:`search`'s lexical ranking of what :meth:`generate` generated for the queries
        (with feedback, the model generates for the best documents too)."""
        beams = num_beams or self.num_beams
        return self._hits(generated, self.lexical_rankings(generated, batch_size, beams, k), k)

    def lexical_rankings(
        self,
        generated: Sequence[Generation],
        batch_size: int = 32,
        num_beams: int | None = None,
        k: int | None = None,
    ) -> list[Ranking]:
        """Per query, ``(document index, score)`` of the documents what it generated scores,
        best first, cut to ``k`` (None: all): the scoring stage, then feedback if any."""
        scores_words = bool(self.options.word_weight)
        words = self.query_words(generated) if scores_words else [[] for _ in generated]
        own_of = [generation.own_words for generation in generated]
        word_index = self.index.words if scores_words or any(own_of) else None
        ngrams_of = [generation.beams + generation.unigrams for generation in generated]
        if GenerativeFeedback.wanted(self.options):
            # Whole-corpus rankings as arrays: feedback reranks all of each first ranking.
            firsts = [
                score_corpus(self.options, ngrams, self.index.ngrams, query_words, word_index, own)
                for ngrams, query_words, own in zip(ngrams_of, words, own_of, strict=True)
            ]
            beams = num_beams or self.num_beams
            depth = self.num_docs if k is None else k
            return self.feedback.rerank(self.options, firsts, depth, batch_size, beams)
        return [
            score_documents(
                self.options, ngrams, self.index.ngrams, k, query_words, word_index, own
            )
            for ngrams, query_words, own in zip(ngrams_of, words, own_of, strict=True)
        ]

    def _hits(
        self, generated: Sequence[Generation], rankings: Sequence[Ranking], k: int
    ) -> list[list[Hit]]:
        """Each ranking cut to ``k`` as hits, followed, when it has fewer, by documents holding
        the query's best generated n-grams (:meth:`_backfill`)."""
        doc_ids = self.index.corpus.doc_ids
        results = []
        for generation, ranked in zip(generated, rankings, strict=True):
            ranked = list(ranked[:k])
            if len(ranked) < k:
                ngrams = generation.beams + generation.unigrams
                ranked += self._backfill(ngrams, {doc for doc, _ in ranked}, k - len(ranked))
            results.append([Hit(doc_ids[doc], float(score)) for doc, score in ranked])
        return results

    def generated_words_of(
        self, docs: Sequence[int], batch_size: int = 32, num_beams: int | None = None
    ) -> dict[int, dict[str, float]]:
        """Per document (by index), the analysed words the model generates reading it, each
        with its share of them (:meth:`dsi.feedback.GenerativeFeedback.words_of`)."""
        return self.feedback.words_of(docs, batch_size, num_beams or self.num_beams)

    def prepare_feedback(
        self, batch_size: int = 32, progress_bar: bool = True, keep_in: Path | None = None
    ) -> int:
        """Read the documents the index's feedback table lacks (all of them when it has none,
        or one of another beam count), so that searching pays only for its queries; the
        table is saved with the index. With ``keep_in`` (a build's work directory), what has
        been read is kept there every few minutes and a later call resumes from it (hours at
        a million passages on a CPU). Returns how many documents were read (0 when these
        options ask for no feedback)."""
        if not GenerativeFeedback.wanted(self.options):
            return 0
        index: NgramGenerativeIndex = self.index
        stored = index.feedback_words
        if stored is not None and stored.beams != self.num_beams:
            stored = None
        start = 0 if stored is None else stored.num_docs
        if start >= index.num_docs:
            return 0
        keep = None
        if keep_in is not None:
            fingerprint = model_fingerprint(self.model)
            kept = kept_table(keep_in, fingerprint, self.num_beams)
            if kept is not None and start < kept.num_docs <= index.num_docs:
                log.info(
                    "Resuming the feedback words at document %d of %d (kept in %s).",
                    kept.num_docs,
                    index.num_docs,
                    keep_in,
                )
                stored, start = kept, kept.num_docs
            base = stored

            def keep(part: FeedbackWords) -> None:
                keep_table(keep_in, part if base is None else base.extended(part), fingerprint)

        if start < index.num_docs:
            more = read_documents(
                index.corpus, self._read, self.num_beams, batch_size, start, progress_bar, keep=keep
            )
            stored = more if stored is None else stored.extended(more)
        index.feedback_words = stored
        return index.num_docs - start

    def _read(self, texts: list[str], batch_size: int, beams: int) -> list[list[str]]:
        """The analysed words the model generates for each of ``texts`` (the feedback stage's
        reader)."""
        # Documents are read in many distinct windows, at index time and when a search reads
        # one the feedback table lacks: without a fixed mmap threshold the heap grew by ~8 MB a
        # document read, never returned (3.8 GB for 500 synthetic passages; dsi.decoding).
        keep_heap_flat()
        return self.query_words(self.generate(texts, batch_size, beams))

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
            batch = list(queries[start : start + batch_size])
            out += self._with_own_words(batch, self._generate_batch(batch, beams))
        return out

    def _with_own_words(self, queries: list[str], generated: list[Generation]) -> list[Generation]:
        """``generated`` with each query's own analysed words, when the lexical score adds them
        (``query_weight``)."""
        if not self.options.query_weight:
            return generated
        own = analyze(queries, language=self.index.config.language)
        return [g._replace(own_words=tuple(w)) for g, w in zip(generated, own, strict=True)]

    def _generate_batch(self, queries: list[str], beams: int) -> list[Generation]:
        encoded, mask = self._encode(queries)
        return self._generate_encoded(encoded, mask, beams)

    @torch.inference_mode()
    def _encode(self, queries: list[str]) -> tuple[BaseModelOutput, torch.Tensor]:
        """The encoder's output for ``queries`` and their attention mask."""
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
        return encoded, enc["attention_mask"]

    @torch.inference_mode()
    def _generate_encoded(
        self, encoded: BaseModelOutput, mask: torch.Tensor, beams: int
    ) -> list[Generation]:
        """Per encoded query, its beams' n-grams, best first tokens and completed words."""
        count = mask.shape[0]
        unigrams: list[list[Scored]] = [[] for _ in range(count)]
        words: list[list[Scored]] = [[] for _ in range(count)]

        def word_starts(first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """From the first step's logits: the best unigrams, the words they start, and (for
            the beams' second pass) each word's query and token."""
            unigrams[:] = self._best_unigrams(first)
            words[:] = self._word_starts_of(unigrams)
            owners = [row for row, tokens in enumerate(words) for _ in tokens]
            tokens = [ngram[0] for row in words for ngram, _ in row]
            return (
                torch.tensor(owners, dtype=torch.long, device=self.device),
                torch.tensor(tokens, dtype=torch.long, device=self.device),
            )

        # The words' first completion step rides along with the beams' second pass.
        ride = RideAlong(word_starts) if self.options.unigrams else None
        sequences, scores = constrained_generate(
            self.model,
            {"encoder_outputs": encoder_rows(encoded), "attention_mask": mask},
            beams,
            self.options.max_tokens + 1,
            self._ngram_processor,
            0.0,
            ride_along=ride,
        )
        if self.options.complete_words:
            first_pass = None if ride is None else ride.logits
            words = self._complete_words(encoded, mask, words, first_pass)
        results = []
        for row in range(count):
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

    def _best_unigrams(self, logits: torch.Tensor) -> list[list[Scored]]:
        """Per query, the ``unigrams`` corpus tokens most likely as the first decoded token,
        from the decoder's first-step ``logits`` (one row per query; beam search's own)."""
        logits = logits.float().clone()
        if self._first_excluded:  # the fused kind: the docid marker's mass is not the n-grams'
            logits[:, self._first_excluded] = float("-inf")
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
        self,
        encoded: BaseModelOutput,
        mask: torch.Tensor,
        firsts: list[list[Scored]],
        first_pass: torch.Tensor | None = None,
    ) -> list[list[Scored]]:
        """Each first token extended by greedy constrained decoding, all queries' at once, until
        the best next token starts another word or ends the n-gram (or ``max_tokens``);
        ``first_pass``: the raw logits after each first token, where a pass already has them."""
        owners = [row for row, tokens in enumerate(firsts) for _ in tokens]
        if not owners:
            return [[] for _ in firsts]
        select = torch.as_tensor(owners, device=self.device)
        encoded, attention = encoder_rows(encoded, select), mask[select]
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
            if first_pass is not None:  # the first step: the beams' pass computed it
                logits, first_pass = first_pass, None
            else:  # each step runs the whole prefix (rows drop out as their words end)
                logits, _ = next_token_logits(
                    self.model, encoder_rows(encoded, rows), attention[rows], decoder_ids
                )
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
