"""GENRE-style nested-dict trie: the peer for the constrained-decoding speed benchmark.

Mirrors ``genre.trie.Trie`` (De Cao et al., 2021): a ``dict`` of ``dict``s keyed by token id,
and a lookup that walks from the root on every call. Use it with transformers'
``generate(prefix_allowed_tokens_fn=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

NestedTrie = dict[int, "NestedTrie"]


def build_genre_trie(seqs: Iterable[Sequence[int]]) -> NestedTrie:
    """Nested dict trie over token-id sequences (EOS already appended by the caller)."""
    root: NestedTrie = {}
    for seq in seqs:
        node = root
        for tok in seq:
            node = node.setdefault(int(tok), {})
    return root


def genre_get(trie_dict: NestedTrie, prefix: Sequence[int]) -> list[int]:
    """Next tokens after ``prefix`` (insertion order), walking from the root; [] if unknown."""
    node = trie_dict
    for tok in prefix:
        node = node.get(tok)
        if node is None:
            return []
    return list(node.keys())


def genre_prefix_allowed_tokens_fn(
    trie_dict: NestedTrie,
    decoder_start_token_id: int,
    fallback: Sequence[int] = (),
) -> Callable[[int, torch.Tensor], list[int]]:
    """``prefix_allowed_tokens_fn`` for ``generate``: the row minus its decoder start token.

    GENRE returns [] for a prefix outside the trie; recent transformers raise on an empty list,
    so pass e.g. ``fallback=[pad_token_id]`` to let dead and finished beams continue.
    """
    fallback = list(fallback)

    def prefix_allowed_tokens_fn(batch_id: int, sent: torch.Tensor) -> list[int]:
        ids = sent.tolist()
        # Rows are [decoder_start, t1, ..., tk]; the trie holds t1.. only.
        if not ids or ids[0] != decoder_start_token_id:
            raise ValueError(f"row {ids} does not start with {decoder_start_token_id}.")
        return genre_get(trie_dict, ids[1:]) or fallback

    return prefix_allowed_tokens_fn
