"""Query -> ranked docids by constrained beam search over the index's docid trie."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from docid.io import published
from dsi.decoding import (
    EMPTY_SLOT,
    ConstrainedRetriever,
    DecodingError,
    Hit,
    check_queries,
    constrained_generate,
)
from dsi.hub import locate_index
from dsi.index import GenerativeIndex, read_manifest
from dsi.seal import NgramGenerativeIndex, NgramRetriever
from trie.processor import TrieLogitsProcessor

log = logging.getLogger(__name__)


class Retriever(ConstrainedRetriever):
    """Searches a :class:`GenerativeIndex` in batches; ``Retriever.load(dir)`` opens a saved one."""

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
        self._max_new_tokens = max(map(len, index.docids.sequences)) + 1

    @classmethod
    def for_index(cls, index: Any, device: str | None = None, **kwargs) -> ConstrainedRetriever:
        """The retriever of an index object of either kind (n-gram indexes get NgramRetriever)."""
        kind = NgramRetriever if isinstance(index, NgramGenerativeIndex) else Retriever
        return kind(index, device=device, **kwargs)

    @classmethod
    def load(
        cls, directory: str | Path, device: str | None = None, **kwargs
    ) -> ConstrainedRetriever:
        """Open a saved index, a local directory or a hub repo id (:func:`dsi.hub.locate_index`);
        an n-gram (SEAL) index gets a :class:`dsi.seal.NgramRetriever`."""
        directory = locate_index(directory)
        manifest = read_manifest(published(Path(directory)))
        if manifest.get("docid_scheme") == "ngram":
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
        body = tokens[: tokens.index(self._eos)]
        offset = self.index.docid_offset
        if any(t < offset for t in body):
            return None
        return self.index.docids.lookup([t - offset for t in body])
