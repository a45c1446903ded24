"""Query -> ranked docids by constrained beam search over the index's docid trie."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessorList

from dsi.index import GenerativeIndex, read_manifest
from dsi.io import published
from trie.processor import TrieLogitsProcessor

log = logging.getLogger(__name__)


# transformers fills the slots of beams that found no hypothesis with a score of -1e9.
_EMPTY_SLOT = -1e8


@dataclass(frozen=True)
class Hit:
    """One retrieved document: its id and the model's log-probability of its docid."""

    doc_id: str
    score: float


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


class DecodingError(RuntimeError):
    """Constrained decoding produced something that is not a docid of the index."""


def constrained_generate(
    model, enc, beams: int, max_new_tokens: int, processor, length_penalty: float = 0.0
) -> tuple[list[list[int]], list[float]]:
    """``beams`` decoded sequences per input (without the start token) and their log-probabilities.

    With one beam transformers decodes greedily and returns no sequence scores, so they are summed
    from the raw logits; ``processor`` must then not mask in place (it would mask those logits).
    """
    greedy = beams == 1
    out = model.generate(
        **enc,
        num_beams=beams,
        num_return_sequences=beams,
        max_new_tokens=max_new_tokens,
        logits_processor=LogitsProcessorList([processor]),
        do_sample=False,
        output_logits=greedy,
        output_scores=True,
        return_dict_in_generate=True,
        **({} if greedy else {"length_penalty": length_penalty, "early_stopping": True}),
    )
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


class Retriever:
    """Searches a :class:`GenerativeIndex` in batches; ``Retriever.load(dir)`` opens a saved one."""

    def __init__(
        self,
        index: GenerativeIndex,
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
        """The constraint of decoding: here the docid trie (the n-gram retriever overrides it)."""
        index, cfg = self.index, self.model.config
        self._processor = TrieLogitsProcessor(
            index.trie,
            decoder_start_token_id=cfg.decoder_start_token_id,
            eos_token_id=cfg.eos_token_id,
            pad_token_id=cfg.pad_token_id,
            # Beam search never reads the raw scores again, so masking them in place is safe.
            inplace=True,
        )
        self._greedy_processor = TrieLogitsProcessor(
            index.trie,
            decoder_start_token_id=cfg.decoder_start_token_id,
            eos_token_id=cfg.eos_token_id,
            pad_token_id=cfg.pad_token_id,
        )
        self._max_new_tokens = max(map(len, index.docids.sequences)) + 1

    @classmethod
    def for_index(cls, index: Any, device: str | None = None, **kwargs) -> Retriever:
        """The retriever of an index object of either kind (n-gram indexes get NgramRetriever)."""
        from dsi.seal import NgramGenerativeIndex, NgramRetriever

        kind = NgramRetriever if isinstance(index, NgramGenerativeIndex) else Retriever
        return kind(index, device=device, **kwargs)

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None, **kwargs) -> Retriever:
        """Open a saved index; an n-gram (SEAL) index gets a :class:`dsi.seal.NgramRetriever`."""
        manifest = read_manifest(published(Path(directory)))
        if manifest.get("docid_scheme") == "ngram":
            from dsi.seal import NgramRetriever

            return NgramRetriever.load(directory, device=device, **kwargs)
        return cls(GenerativeIndex.load(directory), device=device, **kwargs)

    @property
    def num_docs(self) -> int:
        return len(self.index.docids)

    def search(
        self,
        queries: Sequence[str],
        k: int = 10,
        batch_size: int = 32,
        num_beams: int | None = None,
    ) -> list[list[Hit]]:
        """For each query, up to ``k`` distinct documents, best first.

        An empty or whitespace-only query raises ``ValueError`` (:func:`check_queries`).
        """
        check_queries(queries)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        k = min(k, self.num_docs)
        beams = max(num_beams or self.num_beams, k)
        results: list[list[Hit]] = []
        for start in range(0, len(queries), batch_size):
            results += self._search_batch(list(queries[start : start + batch_size]), k, beams)
        return results

    @torch.inference_mode()
    def _search_batch(self, queries: list[str], k: int, beams: int) -> list[list[Hit]]:
        max_len = self.index.config.train.max_source_length
        enc = self.index.tokenizer(
            queries, max_length=max_len, truncation=True, padding=True, return_tensors="pt"
        ).to(self.device)
        sequences, scores = constrained_generate(
            self.model,
            enc,
            beams,
            self._max_new_tokens,
            self._processor if beams > 1 else self._greedy_processor,
            self.length_penalty,
        )
        results = []
        for row in range(len(queries)):
            hits: list[Hit] = []
            seen: set[str] = set()
            for j in range(row * beams, (row + 1) * beams):
                score = scores[j]
                if not math.isfinite(score) or score <= _EMPTY_SLOT:
                    continue  # fewer valid docids than beams: transformers fills the slot
                doc_id = self._to_doc_id(sequences[j])
                if doc_id is None:
                    raise DecodingError(
                        f"Decoding produced {sequences[j]} with score {score:.3f}, "
                        "which is not a docid of this index."
                    )
                if doc_id not in seen:
                    seen.add(doc_id)
                    hits.append(Hit(doc_id, score))
            hits.sort(key=lambda h: h.score, reverse=True)
            results.append(hits[:k])
        return results

    def _to_doc_id(self, tokens: list[int]) -> str | None:
        if self._eos not in tokens:
            return None
        body = tokens[: tokens.index(self._eos)]
        offset = self.index.docid_offset
        if any(t < offset for t in body):
            return None
        return self.index.docids.lookup([t - offset for t in body])
