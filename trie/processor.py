"""A transformers logits processor that keeps beam search inside a :class:`PrefixTrie`."""

from __future__ import annotations

import numpy as np
import torch
from transformers import LogitsProcessor

from trie.prefix import PrefixTrie

# Above this share of the score matrix, per-row (row, col) pairs cost more than building one
# boolean row per distinct prefix and gathering it (atomic docids: every beam at the root allows
# the whole corpus).
_DENSE_SHARE = 1 / 32


class TrieLogitsProcessor(LogitsProcessor):
    """Mask every token that does not continue the row's prefix in ``trie`` to ``-inf``.

    A row of ``input_ids`` is ``[decoder_start, t1, ..., tk]``; its prefix is ``(t1, ..., tk)``.
    Rows whose prefix contains EOS (finished rows that transformers pads) may only emit pad/EOS.
    Rows whose prefix is not in the trie get every token masked (a dead beam); they are counted
    in :attr:`dead_rows` (cumulative) and :attr:`last_dead_rows` (last call).

    ``inplace=True`` overwrites ``scores`` instead of allocating a new matrix (several times
    faster on CPU, where a fresh batch x vocab tensor page-faults on every step). Beam search
    hands processors fresh log-probs, so it is safe there; greedy search with
    ``output_logits=True`` would see its stored raw logits masked.
    """

    def __init__(
        self,
        trie: PrefixTrie,
        decoder_start_token_id: int,
        eos_token_id: int,
        pad_token_id: int,
        *,
        inplace: bool = False,
    ) -> None:
        self.trie = trie
        self.decoder_start_token_id = int(decoder_start_token_id)
        self.eos_token_id = int(eos_token_id)
        self.pad_token_id = int(pad_token_id)
        self.inplace = inplace
        finished = np.array(sorted({self.eos_token_id, self.pad_token_id}), dtype=np.int64)
        finished.flags.writeable = False
        self._finished = finished
        self.calls = 0
        self.dead_rows = 0
        self.last_dead_rows = 0

    def reset_counters(self) -> None:
        """Zero the call and dead-row counters (e.g. between searches)."""
        self.calls = self.dead_rows = self.last_dead_rows = 0

    def allowed_tokens(self, prefix: tuple[int, ...]) -> np.ndarray:
        """Sorted token ids allowed after ``prefix`` (decoder start already removed)."""
        if self.eos_token_id in prefix:
            return self._finished
        return self.trie.next_tokens(prefix)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        n, vocab = scores.shape
        if self.trie.max_token >= vocab:
            raise ValueError(
                f"the trie holds token id {self.trie.max_token} but the model scores only "
                f"{vocab} tokens."
            )
        self.calls += 1
        # One host copy of the ids; identical prefixes (common across beams) are looked up once.
        index: dict[tuple[int, ...], int] = {}
        inv = np.fromiter(
            (index.setdefault(tuple(row[1:]), len(index)) for row in input_ids.tolist()),
            dtype=np.int64,
            count=n,
        )
        allowed = [self.allowed_tokens(p) for p in index]
        lens = np.fromiter(map(len, allowed), dtype=np.int64, count=len(allowed))
        row_lens = lens[inv]
        self.last_dead_rows = int(np.count_nonzero(row_lens == 0))
        self.dead_rows += self.last_dead_rows
        total = int(row_lens.sum())
        neg_inf = float("-inf")
        if total == 0:
            return scores.fill_(neg_inf) if self.inplace else torch.full_like(scores, neg_inf)
        device = scores.device
        if total <= n * vocab * _DENSE_SHARE:
            rows = np.repeat(np.arange(n, dtype=np.int64), row_lens)
            cols = np.concatenate([allowed[i] for i in inv.tolist()])
            idx = torch.from_numpy(np.stack((rows, cols))).to(device)
            kept = scores[idx[0], idx[1]]
            out = scores.fill_(neg_inf) if self.inplace else torch.full_like(scores, neg_inf)
            out[idx[0], idx[1]] = kept
            return out
        rows = np.repeat(np.arange(len(allowed), dtype=np.int64), lens)
        idx = torch.from_numpy(np.stack((rows, np.concatenate(allowed)))).to(device)
        keep = torch.zeros((len(allowed), vocab), dtype=torch.bool, device=device)
        keep[idx[0], idx[1]] = True
        keep = keep[torch.from_numpy(inv).to(device)]
        if self.inplace:
            return scores.masked_fill_(keep.logical_not_(), neg_inf)
        return torch.where(keep, scores, neg_inf)
