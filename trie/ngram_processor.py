"""Constrain generation to n-grams that occur in a corpus (SEAL's FM-index decoding).

Every decoder row is ``[decoder_start, t_1, ..., t_k]``; the generated n-gram is ``t_1..t_k``.
The next token must extend it to an n-gram of the corpus (``NgramIndex.next_tokens``), or be EOS
once ``k >= min_tokens``: like SEAL, an n-gram may end anywhere, not only at a document end. Rows
that already hold EOS (finished hypotheses padded by greedy/sampling) may only emit pad or EOS.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import LogitsProcessor

from trie.fmindex import NgramIndex


class NgramLogitsProcessor(LogitsProcessor):
    """Mask every token that would leave the set of corpus n-grams, all rows in one step.

    ``min_tokens`` is the n-gram length below which EOS stays masked (at least 1). Allowed-id
    arrays are cached per prefix (``cache_size`` prefixes, least recently used dropped), on top
    of the index's own next-token cache. Works on any device: only the final mask is moved.
    """

    def __init__(
        self,
        index: NgramIndex,
        decoder_start_token_id: int,
        eos_token_id: int,
        pad_token_id: int | None = None,
        *,
        min_tokens: int = 1,
        cache_size: int = 65536,
    ) -> None:
        if min_tokens < 1:
            raise ValueError(f"min_tokens must be at least 1, got {min_tokens}")
        self.index = index
        self.decoder_start_token_id = int(decoder_start_token_id)
        self.eos_token_id = int(eos_token_id)
        self.pad_token_id = None if pad_token_id is None else int(pad_token_id)
        self.min_tokens = min_tokens
        self.cache_size = cache_size
        self._cache: dict[tuple[int, ...], np.ndarray] = {}
        done = (
            [self.eos_token_id]
            if self.pad_token_id is None
            else [self.pad_token_id, self.eos_token_id]
        )
        self._finished = np.array(sorted(set(done)), dtype=np.int64)
        self._eos_only = np.array([self.eos_token_id], dtype=np.int64)

    def allowed(self, ngram: tuple[int, ...]) -> np.ndarray:
        """Token ids allowed after the generated ``ngram`` (without the decoder start token)."""
        hit = self._cache.get(ngram)
        if hit is not None:
            return hit
        ids, _ = self.index.next_tokens(ngram)
        # The index never lists its separator; drop it anyway in case a caller's index does.
        ids = ids[ids != self.index.separator]
        if len(ngram) >= self.min_tokens:
            ids = np.union1d(ids, self._eos_only)
        else:
            ids = ids[ids != self.eos_token_id]
        if len(ids) == 0:
            # An n-gram outside the corpus (e.g. forced tokens): end it rather than emit NaNs.
            ids = self._eos_only
        if self.cache_size <= 0:
            return ids
        if len(self._cache) >= self.cache_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[ngram] = ids
        return ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        vocab = scores.shape[-1]
        per_row = []
        for row in input_ids.tolist():
            ngram = tuple(row[1:]) if row and row[0] == self.decoder_start_token_id else tuple(row)
            if self.eos_token_id in ngram:
                per_row.append(self._finished)
            else:
                per_row.append(self.allowed(ngram))
        lengths = np.fromiter((len(a) for a in per_row), dtype=np.int64, count=len(per_row))
        rows = np.repeat(np.arange(len(per_row), dtype=np.int64), lengths)
        cols = np.concatenate(per_row) if per_row else np.zeros(0, dtype=np.int64)
        # Ids beyond the model's output layer (a corpus tokenized with a larger vocab) can't be
        # produced anyway; dropping them keeps the advanced index in bounds.
        inside = cols < vocab
        rows_t = torch.from_numpy(rows[inside]).to(scores.device)
        cols_t = torch.from_numpy(cols[inside]).to(scores.device)
        mask = torch.full_like(scores, float("-inf"))
        mask[rows_t, cols_t] = 0.0
        return scores + mask
