"""Docid retrieval: query -> ranked docids by constrained beam search over the index's docid trie."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dsi.decoding import (
    EMPTY_SLOT,
    ConstrainedRetriever,
    DecodingError,
    Hit,
    constrained_generate,
)
from dsi.index import GenerativeIndex
from trie.processor import TrieLogitsProcessor

log = logging.getLogger(__name__)


class DocidRetriever(ConstrainedRetriever):
    """Searches a :class:`GenerativeIndex` in batches: constrained beam search over its docid
    trie; the docids decoded are the ranking, scored by their log-probability."""

    def _make_processors(self) -> None:
        """The constraint of decoding: the docid trie."""
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
        self._max_new_tokens = index.docid_tokens.max_length + 1

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None, **kwargs) -> DocidRetriever:
        """Open a saved docid index (:meth:`dsi.index.GenerativeIndex.load`)."""
        return cls(GenerativeIndex.load(directory), device=device, **kwargs)

    @property
    def num_docs(self) -> int:
        return len(self.index.docids)

    def _depth(self, k: int, num_beams: int | None) -> tuple[int, int]:
        """``k`` cut to the number of documents, and the beams that find that many (at least
        ``k``; ``num_beams`` or the index's)."""
        k = min(k, self.num_docs)
        return k, max(num_beams or self.num_beams, k)

    def _search(
        self, queries: Sequence[str], k: int, batch_size: int, num_beams: int | None
    ) -> list[list[Hit]]:
        """The ``num_beams`` (at least ``k``) best docids decoded per query are its ranking."""
        k, beams = self._depth(k, num_beams)
        results: list[list[Hit]] = []
        for start in range(0, len(queries), batch_size):
            results += self._search_batch(list(queries[start : start + batch_size]), k, beams)
        return results

    def _explain(
        self, queries: Sequence[str], k: int, batch_size: int, num_beams: int | None
    ) -> tuple[list[list[Hit]], list[list[dict[str, Any]]]]:
        """Each hit's decoded docid (its symbols) and its log-probability, which is its score."""
        results = self._search(queries, k, batch_size, num_beams)
        docids = self.index.docids
        explained = [
            [
                {
                    "docid": [docids.symbols[s] for s in docids.sequence(hit.doc_id)],
                    "logprob": round(hit.score, 5),
                }
                for hit in hits
            ]
            for hits in results
        ]
        return results, explained

    def search_token_ids(
        self,
        sources: Sequence[Sequence[int]],
        k: int = 10,
        batch_size: int = 32,
        num_beams: int | None = None,
    ) -> list[list[Hit]]:
        """Like :meth:`search` for encoder inputs given as token ids (ending in EOS), such as a
        document's indexing view exactly as the model was trained on it."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        k, beams = self._depth(k, num_beams)
        results: list[list[Hit]] = []
        for start in range(0, len(sources), batch_size):
            batch = [list(ids) for ids in sources[start : start + batch_size]]
            width = max(map(len, batch))
            ids = torch.full((len(batch), width), self._pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, tokens in enumerate(batch):
                ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
                mask[row, : len(tokens)] = 1
            enc = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
            results += self._decode(enc, len(batch), k, beams)
        return results

    def _search_batch(self, queries: list[str], k: int, beams: int) -> list[list[Hit]]:
        max_len = self.index.config.train.max_source_length
        enc = self.index.tokenizer(
            queries, max_length=max_len, truncation=True, padding=True, return_tensors="pt"
        ).to(self.device)
        return self._decode(enc, len(queries), k, beams)

    @torch.inference_mode()
    def _decode(self, enc: Any, rows: int, k: int, beams: int) -> list[list[Hit]]:
        """The ``k`` best distinct documents of each of ``rows`` encoded inputs, ranked by the
        log-probability of their docid alone (nothing lexical is added)."""
        sequences, scores = constrained_generate(
            self.model,
            enc,
            beams,
            self._max_new_tokens,
            self._processor if beams > 1 else self._greedy_processor,
            self.length_penalty,
        )
        results = []
        for row in range(rows):
            hits: list[Hit] = []
            seen: set[str] = set()
            for j in range(row * beams, (row + 1) * beams):
                score = scores[j]
                if not math.isfinite(score) or score <= EMPTY_SLOT:
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
        return self.index.docid_tokens.doc_id(tokens[: tokens.index(self._eos)])
