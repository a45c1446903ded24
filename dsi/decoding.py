"""Constrained beam search and the retriever protocol: what the retrievers of every
identifier kind share.

``dsi.docid_retriever.DocidRetriever`` (docids, decoded under the docid trie) and
``dsi.ngram_retriever.NgramRetriever`` (corpus n-grams, decoded under the n-gram index) both
build on :class:`ConstrainedRetriever` and answer :class:`Searcher`.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import LogitsProcessorList

from dsi.model import cache_parameter

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
    ride_along: RideAlong | None = None,
) -> tuple[list[list[int]], list[float]]:
    """``beams`` decoded sequences per input (without the start token) and their log-probabilities.

    ``enc`` holds ``input_ids`` or ``encoder_outputs``, the ``attention_mask`` and optionally
    ``decoder_input_ids`` (a decoder prompt). With more than one beam, :func:`beam_search`;
    with one, transformers decodes greedily and returns no sequence scores, so they are summed
    from the raw logits; ``processor`` must then not mask in place (it would mask those logits).
    Given a list as ``first_logits``, the raw logits of the first decoding step, one row per
    input, are appended to it (the same forward pass; what a caller would otherwise run again).
    ``ride_along`` (:class:`RideAlong`) is served by beam search only: greedy decoding leaves
    its ``logits`` None, but still gives ``choose`` the first step's logits.
    """
    if beams > 1:
        sequences, scores = beam_search(
            model, enc, beams, max_new_tokens, processor, length_penalty, first_logits, ride_along
        )
        return sequences[:, 1:].tolist(), scores.tolist()
    out = model.generate(
        **enc,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        logits_processor=LogitsProcessorList([processor]),
        do_sample=False,
        output_logits=True,
        output_scores=True,
        return_dict_in_generate=True,
    )
    if first_logits is not None:
        first_logits.append(out.logits[0])
    if ride_along is not None:
        ride_along.choose(out.logits[0])
    # Log-probabilities over the whole vocabulary, as beam search scores them.
    generated = out.sequences[:, 1:]
    logprobs = torch.stack(out.logits, dim=1).float().log_softmax(dim=-1)
    steps = logprobs.gather(2, generated.unsqueeze(-1)).squeeze(-1)
    is_eos = (generated == model.config.eos_token_id).long()
    after_eos = (is_eos.cumsum(dim=1) - is_eos) > 0  # padding after the first EOS
    scores = steps.masked_fill(after_eos, 0.0).sum(dim=1)
    return generated.tolist(), scores.tolist()


def next_token_logits(
    model, encoded: Any, mask: torch.Tensor, decoder_ids: torch.Tensor, cache: Any = None
) -> tuple[torch.Tensor, Any]:
    """The model's float32 logits for the token after each row of ``decoder_ids`` and the
    decoder's cache (None where the model keeps none); given a ``cache``, ``decoder_ids`` holds
    only the tokens it has not seen. A model with a ``decode_step`` (``dsi.model.CopyT5``) is
    asked through it: the same floats as its forward, without transformers' per-call wrappers.
    """
    step = getattr(model, "decode_step", None)
    if step is not None:
        logits, cache = step(encoded, mask, decoder_ids, cache)
        return logits.float(), cache
    name = cache_parameter(type(model))
    out = model(
        encoder_outputs=encoded,
        attention_mask=mask,
        decoder_input_ids=decoder_ids,
        use_cache=True,
        return_dict=True,
        **({} if cache is None else {name: cache}),
    )
    return out.logits[:, -1, :].float(), out.get(name)


def encoder_rows(encoded: Any, rows: torch.Tensor | None = None) -> Any:
    """A new encoder output of ``encoded``'s kind (a copying model's carries its source ids)
    holding the given rows of each of its tensors (all of them without ``rows``)."""
    fields = {name: value if rows is None else value[rows] for name, value in encoded.items()}
    return type(encoded)(**fields)


@dataclass
class RideAlong:
    """Extra rows for :func:`beam_search`'s second decoder pass: each continues its input's
    prompt by one token, and gets its next-token logits from that pass, not a pass of its own.

    ``choose(first)`` gets the raw logits of the first step (one row per input) and returns,
    for each extra row, its input's index and its token (two 1-D long tensors); the search
    sets ``logits`` to their raw next-token logits, one row each.
    """

    choose: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    logits: torch.Tensor | None = None


# A score that no live hypothesis reaches: what transformers adds to rule a candidate out.
_RULED_OUT = -1.0e9


@torch.inference_mode()
def beam_search(
    model,
    enc,
    beams: int,
    max_new_tokens: int,
    processor,
    length_penalty: float = 0.0,
    first_logits: list[torch.Tensor] | None = None,
    ride_along: RideAlong | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' beam search (``generate`` with ``num_beams=beams``, ``early_stopping=True``),
    step for step and float for float, without ``generate``'s per-call set-up: per input its
    ``beams`` best finished sequences (start token and prompt included, one row each) and their
    scores (a slot no sequence filled scores about -1e9). ``enc`` and ``first_logits`` are as
    in :func:`constrained_generate`; ``ride_along``'s rows join the second pass
    (:class:`RideAlong`).

    A search decodes ~3 steps of a few milliseconds each; ``generate``'s set-up (it copies its
    configuration, validates its arguments and builds its processors on every call) cost about
    as much again (docs/serving-memory.md).
    """
    config = model.config
    eos, pad = config.eos_token_id, config.pad_token_id
    mask = enc["attention_mask"]
    encoded = enc.get("encoder_outputs")
    if encoded is None:
        encoded = model.get_encoder()(
            input_ids=enc["input_ids"], attention_mask=mask, return_dict=True
        )
    batch = mask.shape[0]
    device = mask.device
    prompt = enc.get("decoder_input_ids")
    if prompt is None:
        prompt = torch.full((batch, 1), config.decoder_start_token_id, device=device)
    # Every beam of an input attends to that input's states.
    beam_rows = torch.arange(batch, device=device).repeat_interleave(beams)
    encoded, mask = encoder_rows(encoded, beam_rows), mask[beam_rows]
    prompt_len = prompt.shape[1]
    max_length = prompt_len + max_new_tokens
    keep = 2 * beams  # enough candidates that `beams` remain when the best all end
    is_top = torch.arange(keep, device=device) < beams
    fill = pad or eos  # transformers' fill value (T5's pad id is 0)
    running = torch.full((batch, beams, max_length), fill, dtype=torch.long, device=device)
    running[:, :, :prompt_len] = prompt[:, None, :]
    sequences = running.clone()
    running_scores = torch.zeros((batch, beams), device=device)
    running_scores[:, 1:] = _RULED_OUT  # only the first beam's tokens at the first step
    scores = torch.full((batch, beams), _RULED_OUT, device=device)
    lengths = torch.zeros((batch, beams), dtype=torch.long, device=device)
    finished = torch.zeros((batch, beams), dtype=torch.bool, device=device)
    improvable = torch.ones((batch, 1), dtype=torch.bool, device=device)
    offsets = torch.arange(batch, device=device)[:, None] * beams
    cache = None
    cur = prompt_len
    riders: tuple[torch.Tensor, torch.Tensor] | None = None  # (input rows, their sequences)
    while True:
        flat = running[:, :, :cur].reshape(batch * beams, cur)
        step_inputs = flat if cache is None else flat[:, -1:]
        if riders is None:
            logits, cache = next_token_logits(model, encoded, mask, step_inputs, cache)
        else:  # the second pass, with the ride-along rows after the beams'
            rows, sequences_of_riders = riders
            rider_ids = sequences_of_riders if cache is None else sequences_of_riders[:, -1:]
            logits, cache = _ride(model, encoded, mask, step_inputs, cache, rows, rider_ids)
            ride_along.logits, logits = logits[batch * beams :], logits[: batch * beams]
            riders = None
        if cur == prompt_len:
            first = logits[::beams]
            if first_logits is not None:
                first_logits.append(first.clone())
            if ride_along is not None:
                inputs, tokens = ride_along.choose(first)
                rows = inputs * beams  # any beam's row: all are alike at the first step
                riders = (rows, torch.cat((flat[rows], tokens[:, None]), dim=1))
        logprobs = processor(flat, torch.nn.functional.log_softmax(logits, dim=-1))
        logprobs = logprobs.view(batch, beams, -1) + running_scores[:, :, None]
        logprobs = logprobs.reshape(batch, -1)
        vocab = logprobs.shape[-1] // beams
        top_scores, top_indices = torch.topk(logprobs, k=keep)
        top_beams = top_indices // vocab
        top_sequences = torch.take_along_dim(running, top_beams[:, :, None], dim=1)
        top_sequences[:, :, cur] = top_indices % vocab
        ended = (top_sequences[:, :, cur] == eos) | (cur + 1 >= max_length)

        # The best `beams` candidates that go on.
        live_scores = top_scores + ended.to(torch.float32) * _RULED_OUT
        chosen = torch.topk(live_scores, k=beams)[1]
        running = torch.take_along_dim(top_sequences, chosen[:, :, None], dim=1)
        running_scores = torch.take_along_dim(live_scores, chosen, dim=1)
        source_beams = torch.take_along_dim(top_beams, chosen, dim=1) + offsets

        # The finished sequences: the best `beams` of those kept and those that just ended.
        just_ended = ended & is_top[None, :]
        ended_scores = top_scores / ((cur + 1 - prompt_len) ** length_penalty)
        full = torch.all(finished, dim=-1, keepdim=True)
        ended_scores += full.to(torch.float32) * _RULED_OUT
        ended_scores += (~improvable).to(torch.float32) * _RULED_OUT
        ended_scores += (~just_ended) * _RULED_OUT
        merged_scores = torch.cat((scores, ended_scores), dim=1)
        best = torch.topk(merged_scores, k=beams)[1]
        sequences = torch.take_along_dim(
            torch.cat((sequences, top_sequences), dim=1), best[:, :, None], dim=1
        )
        scores = torch.take_along_dim(merged_scores, best, dim=1)
        candidate_lengths = torch.full_like(top_beams, cur + 1 - prompt_len)
        lengths = torch.take_along_dim(torch.cat((lengths, candidate_lengths), dim=1), best, dim=1)
        finished = torch.take_along_dim(torch.cat((finished, just_ended), dim=1), best, dim=1)

        cur += 1
        best_running = running_scores[:, :1] / ((cur - prompt_len) ** length_penalty)
        worst_finished = torch.where(
            finished, torch.min(scores, dim=1, keepdim=True)[0], _RULED_OUT
        )
        improvable = improvable & torch.any(best_running > worst_finished, dim=-1, keepdim=True)
        if not (bool(improvable.any()) and not bool(finished.all()) and not bool(ended.all())):
            break
        if cache is not None:
            order = source_beams.reshape(-1)
            cache.reorder_cache(order if riders is None else torch.cat((order, riders[0])))
    if riders is not None:  # the search ended at its first step: the rows ride alone
        rows, sequences_of_riders = riders
        if cache is not None:
            cache.reorder_cache(rows)
        rider_ids = sequences_of_riders if cache is None else sequences_of_riders[:, -1:]
        no_beams = rider_ids[:0]
        ride_along.logits, _ = _ride(model, encoded, mask, no_beams, cache, rows, rider_ids)
    # Cropped as transformers crops: to the longest sequence returned.
    sequences = sequences[:, :, : prompt_len + int(lengths.max())]
    return sequences.reshape(batch * beams, -1), scores.reshape(-1)


def _ride(
    model,
    encoded: Any,
    mask: torch.Tensor,
    beam_ids: torch.Tensor,
    cache: Any,
    rows: torch.Tensor,
    rider_ids: torch.Tensor,
) -> tuple[torch.Tensor, Any]:
    """One decoder pass over the beams' ``beam_ids`` (possibly none) followed by the ride-along
    rows' ``rider_ids``, which attend to the states of the expanded input rows ``rows``."""
    both = torch.cat((torch.arange(len(beam_ids), device=rows.device), rows))
    return next_token_logits(
        model,
        encoder_rows(encoded, both),
        mask[both],
        torch.cat((beam_ids, rider_ids)),
        cache,
    )


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
