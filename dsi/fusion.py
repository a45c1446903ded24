"""Fusion of the n-gram kind's lexical ranking with memorized docids (the ``ngram+semantic`` kind,
issue 29; PAG, Zeng et al. SIGIR 2024).

One model decodes two targets from one encoder pass: corpus n-grams after the decoder start
token (today's ranking: BM25 over what it generates, :mod:`dsi.scoring`) and docids after the
start token and a marker token (``[start, marker, docid..., EOS]``; constrained by a trie over
``[marker, docid..., EOS]``). This module holds the search side's arithmetic:

- :func:`fuse`: simple fusion. A document's score is its lexical score plus ``weight`` times
  the query's best lexical score times its docid's probability among the docid beams (the
  beams' log-probabilities softmaxed), so ``weight`` means the same for every query. Documents
  the beams never reach keep their lexical score; ``weight`` 0 leaves the lexical ranking as
  it is.
- :class:`PrefixRanges` and :class:`PlanningPrior`: PAG's planning-ahead prior. The prior of a
  docid prefix is the best lexical score (divided by the query's best) of any document whose
  docid starts with it, computed for every trie node of every query at once; beam search adds
  ``weight`` times the prior's change at each step, so a beam's score is its log-probability
  plus ``weight`` times its prefix's prior.
- :class:`ExcludeFirst`: the n-gram decoder never sees the marker's probability mass (its
  first step is renormalized without it), so n-gram log-probabilities are those of the n-gram
  task alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from docid.ngram import best_first

# The docid task's marker symbol, the fused model's first new token.
MARKER_SYMBOL = "<docid>"


class PrefixRanges:
    """Every prefix (trie node) of a set of docid token sequences, with the documents under it.

    Nodes are numbered in depth-first order (a parent before its children); node 0 is the
    root (the empty prefix). ``sequences[i]`` is document ``i``'s full token sequence (EOS
    included), all distinct.
    """

    def __init__(self, sequences: Sequence[Sequence[int]]) -> None:
        seqs = [tuple(int(t) for t in seq) for seq in sequences]
        if len(set(seqs)) != len(seqs):
            raise ValueError("Docid sequences must be distinct.")
        self.node_of: dict[tuple[int, ...], int] = {(): 0}
        parent, depth = [-1], [0]
        children: list[dict[int, int]] = [{}]
        self.leaf_of = np.zeros(len(seqs), dtype=np.int64)
        for doc, seq in sorted(enumerate(seqs), key=lambda item: item[1]):
            node = 0
            for length in range(1, len(seq) + 1):
                prefix = seq[:length]
                child = self.node_of.get(prefix)
                if child is None:
                    child = self.node_of[prefix] = len(parent)
                    parent.append(node)
                    depth.append(length)
                    children.append({})
                    children[node][seq[length - 1]] = child
                node = child
            self.leaf_of[doc] = node
        self.parent = np.asarray(parent, dtype=np.int64)
        self.depth = np.asarray(depth, dtype=np.int64)
        # Per node, its children's tokens and node ids (sorted by token), for the prior's steps.
        self.children = [
            (
                np.fromiter(kids.keys(), dtype=np.int64, count=len(kids)),
                np.fromiter(kids.values(), dtype=np.int64, count=len(kids)),
            )
            for kids in children
        ]

    @property
    def num_nodes(self) -> int:
        return len(self.parent)

    def node_max(self, doc_scores: np.ndarray) -> np.ndarray:
        """Per row of ``doc_scores`` ([queries, documents], >= 0), each node's best score of
        the documents under it ([queries, nodes]): leaves take their document's score, then
        each depth, deepest first, passes its maximum to its parents."""
        scores = np.atleast_2d(np.asarray(doc_scores, dtype=np.float64))
        out = np.zeros((scores.shape[0], self.num_nodes), dtype=np.float64)
        out[:, self.leaf_of] = scores
        for level in range(int(self.depth.max(initial=0)), 0, -1):
            nodes = np.flatnonzero(self.depth == level)
            parents = self.parent[nodes]
            # Several children share a parent: maximum.at folds them all in.
            np.maximum.at(out, (slice(None), parents), out[:, nodes])
        return out


def lexical_vectors(rankings: Sequence[Sequence[tuple[int, float]]], num_docs: int) -> np.ndarray:
    """Per query, every document's lexical score divided by the query's best ([queries, docs]):
    0 for documents with none (and for a query with no positive score)."""
    out = np.zeros((len(rankings), num_docs), dtype=np.float64)
    for row, ranked in enumerate(rankings):
        for doc, score in ranked:
            if score > 0:
                out[row, doc] = score
        best = out[row].max(initial=0.0)
        if best > 0:
            out[row] /= best
    return out


class PlanningPrior(LogitsProcessor):
    """Adds ``weight`` times the change of the prefix prior at each step of docid beam search.

    Rows of ``input_ids`` are ``[start, marker, t1, ..., tk]``, ``beams`` rows per query in
    query order; ``priors`` ([queries, nodes]) is :meth:`PrefixRanges.node_max` of the queries'
    :func:`lexical_vectors` over ``ranges`` (whose sequences are the docid tokens after the
    marker). Summed over a docid's steps the additions are ``weight * (prior(docid) -
    prior(root))``: the second term is the same for every docid of a query.
    """

    def __init__(
        self, ranges: PrefixRanges, priors: np.ndarray, beams: int, weight: float, skip: int = 2
    ) -> None:
        self.ranges = ranges
        self.priors = priors
        self.beams = beams
        self.weight = weight
        self.skip = skip  # the start and marker tokens before the docid

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        adds: list[np.ndarray] = []
        for row, ids in enumerate(input_ids[:, self.skip :].tolist()):
            node = self.ranges.node_of.get(tuple(ids))
            if node is None:
                continue  # a finished (padded) or dead row: nothing to plan
            tokens, kids = self.ranges.children[node]
            if not len(tokens):
                continue
            prior = self.priors[row // self.beams]
            rows.append(np.full(len(tokens), row, dtype=np.int64))
            cols.append(tokens)
            adds.append(self.weight * (prior[kids] - prior[node]))
        if rows:
            r = torch.from_numpy(np.concatenate(rows)).to(scores.device)
            c = torch.from_numpy(np.concatenate(cols)).to(scores.device)
            a = torch.from_numpy(np.concatenate(adds)).to(scores.device, scores.dtype)
            scores[r, c] += a
        return scores


class ExcludeFirst(LogitsProcessor):
    """At the first decoded step, drop ``tokens`` (the docid marker) and renormalize: what the
    model gives the docid task is not taken from the n-grams' probabilities."""

    def __init__(self, tokens: Sequence[int]) -> None:
        self.tokens = list(tokens)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] != 1:
            return scores
        scores = scores.clone()
        scores[:, self.tokens] = float("-inf")
        return scores.log_softmax(dim=-1)


class Chain(LogitsProcessor):
    """Several logits processors applied in order, as one."""

    def __init__(self, *processors: Any) -> None:
        self.processors = processors

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for processor in self.processors:
            scores = processor(input_ids, scores)
        return scores

    def allowed(self, prefix: tuple[int, ...]) -> Any:
        """The allowed tokens of the last processor that constrains (the n-gram index's)."""
        return self.processors[-1].allowed(prefix)


def docid_shares(reached: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """The documents the docid beams reached with their docid's probability among them (the
    beams' log-probabilities softmaxed), in the order given."""
    if not reached:
        return []
    logprobs = np.asarray([lp for _, lp in reached], dtype=np.float64)
    shares = np.exp(logprobs - logprobs.max())
    shares /= shares.sum()
    return [(doc, float(share)) for (doc, _), share in zip(reached, shares, strict=True)]


def fuse(
    lexical: Sequence[tuple[int, float]],
    reached: Sequence[tuple[int, float]],
    weight: float,
    k: int | None = None,
) -> list[tuple[int, float]]:
    """``(doc, score)`` best first (cut to ``k``): the lexical ranking plus ``weight`` times
    the query's best lexical score (1 when it has none) times each reached document's docid
    share (:func:`docid_shares`). ``weight`` 0 (or no reached document) returns the lexical
    ranking unchanged."""
    if weight == 0 or not reached:
        return best_first(list(lexical), k)
    best = max((score for _, score in lexical), default=0.0)
    scale = weight * (best if best > 0 else 1.0)
    scores = dict(lexical)
    for doc, share in docid_shares(reached):
        scores[doc] = scores.get(doc, 0.0) + scale * share
    return best_first(list(scores.items()), k)
