"""Constrained-decoding structures over docid token sequences."""

from trie.prefix import PrefixTrie
from trie.processor import TrieLogitsProcessor

__all__ = ["PrefixTrie", "TrieLogitsProcessor"]
