"""Constrained beam search and the retriever protocol: what the retrievers of every
identifier kind share.

``dsi.docid_retriever.DocidRetriever`` (docids, decoded under the docid trie) and
``dsi.ngram_retriever.NgramRetriever`` (corpus n-grams, decoded under the n-gram index) both
build on :class:`ConstrainedRetriever` and answer :class:`Searcher`.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import LogitsProcessorList

# transformers fills the slots of beams that found no hypothesis with a score of -1e9.
EMPTY_SLOT = -1e8


# glibc's mallopt parameter, and the size from which blocks are mapped (and unmapped when freed).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 256 << 10


@functools.cache
def keep_heap_flat() -> bool:
    """Have glibc map every block of 256 KiB or more on its own, for a process that decodes
    many distinct inputs (``dsi serve``, reading every document for feedback); True where set.

    glibc maps a large block and unmaps it when freed, but each time it does it raises that
    threshold (up to 32 MB), so after the first decode the tensors of a decode step (megabytes,
    shaped by each batch's lengths) come from the heap, between the small arrays that the
    decoding caches keep (``trie.ngram_processor``, ``trie.fmindex``): freed, the heap cannot
    shrink past those, and the process grew by ~3 MB per batch of 8 windows, to 18 GB reading
    SciFact's documents. A fixed threshold keeps the transient tensors off the heap
    (docs/serving-memory.md). Process-wide, so training processes are not switched.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl may lack it)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))


@dataclass(frozen=True)
class Hit:
    """One retrieved document: its id and its score, higher is better (the log-probability of
    its docid, or for n-gram identifiers the BM25 of what the model generated)."""

    doc_id: str
    score: float


class Searcher(Protocol):
    """The one retriever protocol: ranked documents with scores for a batch of queries."""

    num_docs: int

    def search(self, queries: Sequence[str], k: int = 10, **options: Any) -> list[list[Hit]]:
        """For each query, up to ``k`` distinct documents, best first (``options``: a
        retriever's own, e.g. ``batch_size`` and ``num_beams``)."""
        ...


def check_queries(queries: Sequence[str]) -> None:
    """Refuse what no search can answer: a bare string, a query that is not a string, and an
    empty or whitespace-only query (it would still rank documents, by nothing)."""
    if isinstance(queries, str):
        raise TypeError("search() takes a list of queries; wrap a single query in a list.")
    for i, query in enumerate(queries):
        if not isinstance(query, str):
            raise TypeError(f"Query {i} is a {type(query).__name__}, not a string.")
        if not query.strip():
            kind = "empty" if not query else "only whitespace"
            raise ValueError(f"Query {i} is {kind}; give something to search for.")


def _check_request(queries: Sequence[str], k: int) -> None:
    """Refuse a search that no retriever can answer: bad queries (:func:`check_queries`) or
    ``k`` below 1."""
    check_queries(queries)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")


class DecodingError(RuntimeError):
    """Constrained decoding produced something that is not a docid of the index."""


def constrained_generate(
    model,
    enc,
    beams: int,
    max_new_tokens: int,
    processor,
    length_penalty: float = 0.0,
    first_logits: list[torch.Tensor] | None = None,
) -> tuple[list[list[int]], list[float]]:
    """``beams`` decoded sequences per input (without the start token) and their log-probabilities.

    With one beam transformers decodes greedily and returns no sequence scores, so they are summed
    from the raw logits; ``processor`` must then not mask in place (it would mask those logits).
    Given a list as ``first_logits``, the raw logits of the first decoding step, one row per
    input, are appended to it (the same forward pass; what a caller would otherwise run again).
    """
    greedy = beams == 1
    keep_logits = greedy or first_logits is not None
    out = model.generate(
        **enc,
        num_beams=beams,
        num_return_sequences=beams,
        max_new_tokens=max_new_tokens,
        logits_processor=LogitsProcessorList([processor]),
        do_sample=False,
        output_logits=keep_logits,
        output_scores=True,
        return_dict_in_generate=True,
        **({} if greedy else {"length_penalty": length_penalty, "early_stopping": True}),
    )
    if first_logits is not None:
        first_logits.append(out.logits[0][::beams])
    if not greedy:
        scores = out.sequences_scores
    else:
        # Log-probabilities over the whole vocabulary, as beam search scores them.
        generated = out.sequences[:, 1:]
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(dim=-1)
        steps = logprobs.gather(2, generated.unsqueeze(-1)).squeeze(-1)
        is_eos = (generated == model.config.eos_token_id).long()
        after_eos = (is_eos.cumsum(dim=1) - is_eos) > 0  # padding after the first EOS
        scores = steps.masked_fill(after_eos, 0.0).sum(dim=1)
    return out.sequences[:, 1:].tolist(), scores.tolist()


class ConstrainedRetriever:
    """An index's model on a device, with the logits processors that constrain its decoding.

    Subclasses choose the constraint (``_make_processors``) and rank what is decoded (``search``).
    """

    def __init__(
        self,
        index: Any,
        device: str | torch.device | None = None,
        num_beams: int | None = None,
        length_penalty: float = 0.0,
    ) -> None:
        self.index = index
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = index.model.to(self.device).eval()
        self.num_beams = num_beams or index.config.num_beams
        # 0.0 ranks by the summed log-probability, i.e. the probability of the whole docid.
        self.length_penalty = length_penalty
        cfg = self.model.config
        self._eos = cfg.eos_token_id
        self._pad = cfg.pad_token_id
        self._make_processors()

    def _make_processors(self) -> None:
        raise NotImplementedError

    def search(
        self,
        queries: Sequence[str],
        k: int = 10,
        batch_size: int = 32,
        num_beams: int | None = None,
    ) -> list[list[Hit]]:
        """For each query, up to ``k`` distinct documents, best first, ``batch_size`` queries
        decoded at a time with ``num_beams`` beams (None: the index's ``num_beams``).

        An empty or whitespace-only query raises ``ValueError`` (:func:`check_queries`).
        """
        _check_request(queries, k)
        return self._search(queries, k, batch_size, num_beams)

    def _search(
        self, queries: Sequence[str], k: int, batch_size: int, num_beams: int | None
    ) -> list[list[Hit]]:
        """The kind's ranking of valid queries."""
        raise NotImplementedError

    def explain(
        self,
        queries: Sequence[str],
        k: int = 10,
        batch_size: int = 32,
        num_beams: int | None = None,
    ) -> tuple[list[list[Hit]], list[list[dict[str, Any]]]]:
        """:meth:`search`'s hits and, for each hit, what scored it (a JSON-ready mapping whose
        keys depend on the identifier kind: :meth:`_explain`)."""
        _check_request(queries, k)
        return self._explain(queries, k, batch_size, num_beams)

    def _explain(
        self, queries: Sequence[str], k: int, batch_size: int, num_beams: int | None
    ) -> tuple[list[list[Hit]], list[list[dict[str, Any]]]]:
        """The kind's hits of valid queries and what scored each."""
        raise NotImplementedError
